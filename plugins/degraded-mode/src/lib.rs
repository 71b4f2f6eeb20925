//! Chooses, per path prefix, what to answer when no region can serve: a fixed response
//! marked `x-switchyard-degraded: 1`, or the stale-if-error cache. The longest matching
//! prefix wins; paths no rule matches get the service's configured degraded answer.

use std::cmp::Reverse;

use serde::Deserialize;
use switchyard_sdk::{LocalResponse, Plugin, Request, UnavailableAction, config, export_plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    prefix: String,
    #[serde(default)]
    stale: bool,
    status: Option<u16>,
    body: Option<String>,
    content_type: Option<String>,
}

pub struct DegradedMode {
    /// Prefix and answer, longest prefix first.
    rules: Vec<(String, UnavailableAction)>,
}

impl Plugin for DegradedMode {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let config: Config = config::parse(config)?;
        if config.rules.is_empty() {
            return Err("rules must not be empty".into());
        }
        let mut rules: Vec<(String, UnavailableAction)> = Vec::new();
        for rule in config.rules {
            let prefix = rule.prefix;
            if !prefix.starts_with('/') {
                return Err(format!("rule {prefix:?}: prefix must start with '/'"));
            }
            if rules.iter().any(|(p, _)| *p == prefix) {
                return Err(format!("rule {prefix:?}: duplicate prefix"));
            }
            let answer = if rule.stale {
                if rule.status.is_some() || rule.body.is_some() || rule.content_type.is_some() {
                    return Err(format!(
                        "rule {prefix:?}: stale takes no status, body or type"
                    ));
                }
                UnavailableAction::Stale
            } else {
                let status = rule.status.unwrap_or(503);
                if !(200..=599).contains(&status) {
                    return Err(format!("rule {prefix:?}: status {status} is not 200-599"));
                }
                let content_type = rule.content_type.as_deref().unwrap_or("text/plain");
                // The host refuses a response with a header value it cannot send; say so at
                // load time instead, where `switchyard check` shows it.
                if content_type.is_empty()
                    || !content_type
                        .bytes()
                        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                {
                    return Err(format!(
                        "rule {prefix:?}: content_type {content_type:?} is not a valid header value"
                    ));
                }
                let resp = LocalResponse::new(status)
                    .header("content-type", content_type)
                    .degraded()
                    .body(rule.body.unwrap_or_default());
                UnavailableAction::Local(resp)
            };
            rules.push((prefix, answer));
        }
        rules.sort_by_key(|(prefix, _)| Reverse(prefix.len()));
        Ok(DegradedMode { rules })
    }

    fn on_unavailable(&self, req: &Request) -> UnavailableAction {
        self.rules
            .iter()
            .find(|(prefix, _)| req.path().starts_with(prefix.as_str()))
            .map_or(UnavailableAction::Default, |(_, answer)| answer.clone())
    }
}

export_plugin!(DegradedMode);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_sdk::Decision;

    fn plugin() -> DegradedMode {
        let config = json!({ "rules": [
            { "prefix": "/orders", "status": 503, "body": "ordering is temporarily unavailable",
              "content_type": "text/plain" },
            { "prefix": "/catalog", "stale": true },
            { "prefix": "/orders/export", "status": 200, "body": "{}",
              "content_type": "application/json" },
        ] });
        DegradedMode::init(config).expect("valid config")
    }

    fn unavailable(path: &str) -> UnavailableAction {
        plugin().on_unavailable(&Request::new("GET", path))
    }

    #[test]
    fn a_matching_rule_answers_locally_and_marks_the_response_degraded() {
        let UnavailableAction::Local(resp) = unavailable("/orders/42?x=1") else {
            panic!("expected a local response");
        };
        assert_eq!(resp.status, 503);
        assert_eq!(resp.body, b"ordering is temporarily unavailable");
        assert_eq!(resp.header_value("content-type"), Some("text/plain"));
        assert_eq!(resp.header_value("x-switchyard-degraded"), Some("1"));
    }

    #[test]
    fn the_longest_prefix_wins() {
        let UnavailableAction::Local(resp) = unavailable("/orders/export/today") else {
            panic!("expected a local response");
        };
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(resp.header_value("content-type"), Some("application/json"));
    }

    #[test]
    fn stale_rules_and_unmatched_paths() {
        assert_eq!(unavailable("/catalog/items"), UnavailableAction::Stale);
        assert_eq!(unavailable("/users/1"), UnavailableAction::Default);
        assert_eq!(
            plugin().on_request(&Request::new("GET", "/orders")),
            Decision::Default
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for rules in [
            json!([]),
            json!([{ "prefix": "orders" }]),
            json!([{ "prefix": "/a", "stale": true, "status": 503 }]),
            json!([{ "prefix": "/a", "status": 42 }]),
            json!([{ "prefix": "/a", "content_type": "text/plain\nx-evil: 1" }]),
            json!([{ "prefix": "/a", "content_type": "" }]),
            json!([{ "prefix": "/a" }, { "prefix": "/a", "stale": true }]),
            json!([{ "prefix": "/a", "retry": true }]),
        ] {
            assert!(
                DegradedMode::init(json!({ "rules": rules })).is_err(),
                "{rules}"
            );
        }
    }
}
