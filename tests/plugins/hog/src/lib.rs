//! Allocates and touches `bytes` bytes in `on_request`, then answers `200 allocated N`.
//! 1 GiB breaks the memory cap; 1 MiB is the twin that stays within it.

use switchyard_sdk::{Decision, LocalResponse, Plugin, Request, export_plugin};

struct Hog {
    bytes: usize,
}

impl Plugin for Hog {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let bytes = config
            .get("bytes")
            .and_then(|v| v.as_u64())
            .ok_or("bytes is required")?;
        Ok(Hog {
            bytes: usize::try_from(bytes).map_err(|e| e.to_string())?,
        })
    }

    fn on_request(&self, _req: &Request) -> Decision {
        let mut block = vec![0u8; self.bytes];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        let touched = std::hint::black_box(&block).iter().step_by(4096).count();
        Decision::Local(
            LocalResponse::new(200).text(format!("allocated {} pages {touched}", self.bytes)),
        )
    }
}

export_plugin!(Hog);
