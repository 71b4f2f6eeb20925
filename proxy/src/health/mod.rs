//! Region health: the state machine, the monitor that owns it, probe loops, and the snapshot.

pub mod active;
pub mod monitor;
pub mod snapshot;
pub mod state;

pub use monitor::{HealthEvent, HealthHandle, HealthMonitor, HealthMonitorState};
pub use snapshot::{HealthSnapshot, RegionView};
pub use state::RegionState;
