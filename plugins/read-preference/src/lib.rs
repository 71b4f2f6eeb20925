//! Sends reads to the preferred regions that are healthy, in the configured order, then to
//! the write region. Writes and other methods keep default routing.

use serde::Deserialize;
use switchyard_sdk::{Decision, Plugin, Request, config, export_plugin, host};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Region names, most preferred first.
    preferred: Vec<String>,
}

pub struct ReadPreference {
    preferred: Vec<String>,
}

impl Plugin for ReadPreference {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let Config { preferred } = config::parse(config)?;
        if preferred.is_empty() {
            return Err("preferred must name at least one region".into());
        }
        // During init the host lists the service's regions as configured, so a typo is
        // refused here (and by `switchyard check`) instead of failing every read later.
        // An empty list means a host that does not tell; then there is nothing to check.
        let regions = host::regions();
        if !regions.is_empty()
            && let Some(unknown) = preferred
                .iter()
                .find(|name| !regions.iter().any(|r| &r.name == *name))
        {
            let known: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "preferred names region {unknown:?}, which the service does not have (it has {})",
                known.join(", ")
            ));
        }
        Ok(ReadPreference { preferred })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if !req.is_read() {
            return Decision::Default;
        }
        let regions = host::regions();
        let write = regions.iter().filter(|r| r.write).map(|r| &r.name);
        // Sized once: the guest's allocator is a visible part of a call's cost.
        let mut order: Vec<&str> = Vec::with_capacity(self.preferred.len() + 1);
        for name in self.preferred.iter().chain(write) {
            let healthy = regions.iter().any(|r| &r.name == name && r.healthy);
            if healthy && !order.contains(&name.as_str()) {
                order.push(name);
            }
        }
        if order.is_empty() {
            Decision::Default
        } else {
            Decision::prefer(order)
        }
    }
}

export_plugin!(ReadPreference);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_sdk::{Region, testing::MockHost};

    fn setup() -> (MockHost, ReadPreference) {
        let mock = MockHost::new();
        mock.region(Region::new("westus", 0).write())
            .region(Region::new("northeurope", 1))
            .region(Region::new("westeurope", 2));
        let config = json!({ "preferred": ["northeurope", "westeurope"] });
        (mock, ReadPreference::init(config).expect("valid config"))
    }

    #[test]
    fn reads_prefer_healthy_preferred_regions_then_the_write_region() {
        let (mock, plugin) = setup();
        let get = Request::new("GET", "/orders/1");
        let all = ["northeurope", "westeurope", "westus"];
        assert_eq!(plugin.on_request(&get), Decision::prefer(all));
        mock.set_healthy("northeurope", false);
        let head = Request::new("HEAD", "/orders/1");
        assert_eq!(
            plugin.on_request(&head),
            Decision::prefer(["westeurope", "westus"])
        );
        mock.set_healthy("westeurope", false);
        assert_eq!(plugin.on_request(&get), Decision::prefer(["westus"]));
        mock.set_healthy("westus", false);
        assert_eq!(plugin.on_request(&get), Decision::Default);
    }

    #[test]
    fn a_preferred_write_region_is_listed_once() {
        let (_mock, _) = setup();
        let config = json!({ "preferred": ["westus", "northeurope"] });
        let plugin = ReadPreference::init(config).expect("valid config");
        let get = Request::new("GET", "/");
        assert_eq!(
            plugin.on_request(&get),
            Decision::prefer(["westus", "northeurope"])
        );
    }

    #[test]
    fn writes_keep_default_routing() {
        let (_mock, plugin) = setup();
        for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let req = Request::new(method, "/orders");
            assert_eq!(plugin.on_request(&req), Decision::Default, "{method}");
        }
    }

    #[test]
    fn a_region_the_service_does_not_have_is_refused_at_init() {
        let (_mock, _) = setup();
        let err = ReadPreference::init(json!({ "preferred": ["northeurope", "westeuropa"] }))
            .err()
            .expect("a typo is refused");
        assert_eq!(
            err,
            "preferred names region \"westeuropa\", which the service does not have (it has westus, northeurope, westeurope)"
        );
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(ReadPreference::init(json!({})).is_err());
        assert!(ReadPreference::init(json!({ "preferred": [] })).is_err());
        assert!(ReadPreference::init(json!({ "preferred": ["a"], "extra": 1 })).is_err());
    }
}
