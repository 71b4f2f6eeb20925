//! Refuses every config: `init` returns an error (the `switchyard check` test).

use switchyard_sdk::{Plugin, export_plugin};

struct InitFail;

impl Plugin for InitFail {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let why = config
            .get("why")
            .and_then(|v| v.as_str())
            .unwrap_or("no reason");
        Err(format!("this plugin refuses every config ({why})"))
    }
}

export_plugin!(InitFail);
