//! `switchyard demo`: a self-contained failover drill on loopback.

/// Runs the drill.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    Err("the demo is being written".into())
}
