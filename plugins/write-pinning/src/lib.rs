//! Pins writes to the service's write region, so a write never lands on a replica. When the
//! write region is down it either refuses the write or, if allowed, promotes the next healthy
//! region by priority. With a session header, a session's reads follow its last write for a
//! while (read-your-writes).

use std::time::Duration;

use serde::Deserialize;
use switchyard_sdk::{Decision, LocalResponse, Plugin, Request, config, export_plugin, host};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    promote_on_failure: bool,
    session_header: Option<String>,
    #[serde(default, deserialize_with = "config::optional_duration")]
    read_your_writes: Option<Duration>,
}

pub struct WritePinning {
    promote_on_failure: bool,
    /// The session header, and how long a session's reads follow its last write.
    sessions: Option<(String, Duration)>,
}

impl Plugin for WritePinning {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let config: Config = config::parse(config)?;
        let sessions = match (config.session_header, config.read_your_writes) {
            (Some(_), Some(Duration::ZERO)) => return Err("read_your_writes must be > 0".into()),
            (Some(header), window) => Some((header, window.unwrap_or(Duration::from_secs(5)))),
            (None, Some(_)) => return Err("read_your_writes needs session_header".into()),
            (None, None) => None,
        };
        let promote_on_failure = config.promote_on_failure;
        Ok(WritePinning {
            promote_on_failure,
            sessions,
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if req.is_write() {
            return self.pin_write(req);
        }
        if req.is_read()
            && let Some(session) = self.session(req)
            && let Some(region) = host::kv_get(&session)
        {
            return Decision::prefer([String::from_utf8_lossy(&region)]);
        }
        Decision::Default
    }
}

impl WritePinning {
    fn pin_write(&self, req: &Request) -> Decision {
        let regions = host::regions();
        let Some(write) = regions.iter().find(|r| r.write) else {
            return Decision::Default; // no write region: every region takes writes
        };
        let target = if write.healthy {
            Some(write)
        } else if self.promote_on_failure {
            regions
                .iter()
                .filter(|r| r.healthy)
                .min_by_key(|r| r.priority)
        } else {
            None
        };
        let Some(target) = target else {
            host::counter_add("writes_refused", 1);
            let body = format!("write region {} is unavailable", write.name);
            return Decision::Local(LocalResponse::new(503).degraded().text(body));
        };
        if !target.write {
            host::counter_add("writes_promoted", 1);
        }
        if let (Some(session), Some((_, window))) = (self.session(req), &self.sessions) {
            host::kv_set(&session, target.name.as_bytes(), *window);
        }
        Decision::pin(&target.name)
    }

    /// The key-value key of the request's session, if it names one: the session id itself
    /// (the store is this plugin's own, and sessions are all it keeps there).
    fn session(&self, req: &Request) -> Option<String> {
        let (header, _) = self.sessions.as_ref()?;
        req.header(header)
    }
}

export_plugin!(WritePinning);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_sdk::{Region, testing::MockHost};

    fn setup(config: serde_json::Value) -> (MockHost, WritePinning) {
        let mock = MockHost::new();
        mock.region(Region::new("westus", 0).write())
            .region(Region::new("northeurope", 1))
            .region(Region::new("eastus", 2));
        (mock, WritePinning::init(config).expect("valid config"))
    }

    #[test]
    fn writes_are_pinned_to_the_write_region_and_reads_untouched() {
        let (_mock, plugin) = setup(json!({}));
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let req = Request::new(method, "/orders");
            assert_eq!(plugin.on_request(&req), Decision::pin("westus"), "{method}");
        }
        let get = Request::new("GET", "/orders");
        assert_eq!(plugin.on_request(&get), Decision::Default);
    }

    #[test]
    fn a_down_write_region_refuses_writes_without_promotion() {
        let (mock, plugin) = setup(json!({ "promote_on_failure": false }));
        mock.set_healthy("westus", false);
        let Decision::Local(resp) = plugin.on_request(&Request::new("POST", "/orders")) else {
            panic!("expected a local response");
        };
        assert_eq!(resp.status, 503);
        assert_eq!(resp.body, b"write region westus is unavailable");
        assert_eq!(resp.header_value("x-switchyard-degraded"), Some("1"));
        assert_eq!(mock.counter("writes_refused"), 1);
    }

    #[test]
    fn promotion_pins_the_next_healthy_region_by_priority() {
        let (mock, plugin) = setup(json!({ "promote_on_failure": true }));
        let post = Request::new("POST", "/orders");
        mock.set_healthy("westus", false);
        assert_eq!(plugin.on_request(&post), Decision::pin("northeurope"));
        mock.set_healthy("northeurope", false);
        assert_eq!(plugin.on_request(&post), Decision::pin("eastus"));
        assert_eq!(mock.counter("writes_promoted"), 2);
        mock.set_healthy("eastus", false);
        let Decision::Local(resp) = plugin.on_request(&post) else {
            panic!("expected a local response");
        };
        assert_eq!(resp.status, 503);
    }

    #[test]
    fn reads_follow_a_sessions_last_write_for_the_window() {
        let config = json!({ "session_header": "x-session-id", "read_your_writes": "5s" });
        let (mock, plugin) = setup(config);
        let get = Request::new("GET", "/orders/1");
        mock.header("x-session-id", "abc");
        assert_eq!(plugin.on_request(&get), Decision::Default);
        assert_eq!(
            plugin.on_request(&Request::new("PUT", "/orders/1")),
            Decision::pin("westus")
        );
        mock.advance(Duration::from_millis(4_999));
        assert_eq!(plugin.on_request(&get), Decision::prefer(["westus"]));
        mock.clear_headers().header("x-session-id", "other");
        assert_eq!(plugin.on_request(&get), Decision::Default);
        mock.clear_headers().header("X-Session-Id", "abc");
        assert_eq!(plugin.on_request(&get), Decision::prefer(["westus"]));
        mock.advance(Duration::from_millis(1));
        assert_eq!(plugin.on_request(&get), Decision::Default);
    }

    #[test]
    fn reads_follow_a_promoted_write() {
        let config = json!({ "promote_on_failure": true, "session_header": "x-session-id" });
        let (mock, plugin) = setup(config);
        mock.set_healthy("westus", false)
            .header("x-session-id", "abc");
        assert_eq!(
            plugin.on_request(&Request::new("POST", "/")),
            Decision::pin("northeurope")
        );
        let get = Request::new("GET", "/");
        assert_eq!(plugin.on_request(&get), Decision::prefer(["northeurope"]));
    }

    #[test]
    fn without_a_write_region_writes_keep_default_routing() {
        let plugin = WritePinning::init(json!({})).expect("valid config");
        MockHost::new().region(Region::new("westus", 0));
        assert_eq!(
            plugin.on_request(&Request::new("POST", "/")),
            Decision::Default
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for config in [
            json!({ "read_your_writes": "5s" }),
            json!({ "session_header": "x-session-id", "read_your_writes": "0s" }),
            json!({ "session_header": "x-session-id", "read_your_writes": "soon" }),
            json!({ "promote_on_failure": "yes" }),
            json!({ "pin": true }),
        ] {
            assert!(WritePinning::init(config.clone()).is_err(), "{config}");
        }
    }
}
