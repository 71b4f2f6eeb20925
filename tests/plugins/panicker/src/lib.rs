//! Panics in `on_request` when `panic` is true (a trap); otherwise answers `200 calm`.

use switchyard_sdk::{Decision, LocalResponse, Plugin, Request, export_plugin};

struct Panicker {
    panic: bool,
}

impl Plugin for Panicker {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        Ok(Panicker {
            panic: config
                .get("panic")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if self.panic {
            panic!("panicker: refusing {}", req.path());
        }
        Decision::Local(LocalResponse::new(200).text("calm"))
    }
}

export_plugin!(Panicker);
