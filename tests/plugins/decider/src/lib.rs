//! Answers what its config says, for tests of chains and bad decisions:
//! `{"decision": "default" | "pin:REGION" | "prefer:A,B" | "local:STATUS:BODY",
//!   "only_path": "/prefix" (optional: other paths get default),
//!   "echo_header": "name" (optional: a local answer's body is that request header's value),
//!   "stamp": "name" (optional: responses from regions get header `name: REGION`, and the
//!   counter `stamped` counts them; a plugin without it leaves `on_response` at its default)}`

use switchyard_sdk::{
    Decision, LocalResponse, Plugin, Request, Response, ResponseAction, export_plugin, host,
};

struct Decider {
    decision: String,
    only_path: Option<String>,
    echo_header: Option<String>,
    stamp: Option<String>,
}

impl Plugin for Decider {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Decider {
            decision: text("decision").ok_or("decision is required")?,
            only_path: text("only_path"),
            echo_header: text("echo_header"),
            stamp: text("stamp"),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if self
            .only_path
            .as_ref()
            .is_some_and(|p| !req.path().starts_with(p.as_str()))
        {
            return Decision::Default;
        }
        let d = self.decision.as_str();
        if let Some(region) = d.strip_prefix("pin:") {
            Decision::pin(region)
        } else if let Some(list) = d.strip_prefix("prefer:") {
            Decision::prefer(list.split(','))
        } else if let Some(rest) = d.strip_prefix("local:") {
            let (status, body) = rest.split_once(':').unwrap_or((rest, ""));
            let mut body = body.to_owned();
            if let Some(name) = &self.echo_header {
                body = req.header(name).unwrap_or_else(|| "<none>".into());
            }
            Decision::Local(LocalResponse::new(status.parse().unwrap_or(599)).text(body))
        } else {
            Decision::Default
        }
    }

    fn on_response(&self, _req: &Request, resp: &Response) -> ResponseAction {
        let Some(name) = &self.stamp else {
            return ResponseAction::Pass;
        };
        host::counter_add("stamped", 1);
        ResponseAction::SetHeaders(vec![
            (name.clone(), resp.region.clone()),
            // The host owns this one: a plugin cannot change it.
            ("x-switchyard-region".into(), "forged".into()),
        ])
    }
}

export_plugin!(Decider);
