//! Prometheus metrics (SPEC section 5): one process-wide registry and typed recorders.
//!
//! Label values come only from the config (service, region and plugin names), the closed set
//! of attempt outcomes, and HTTP status codes, so cardinality stays bounded whatever the
//! traffic. The request path goes through [`ServiceMetrics`], built once per service, which
//! holds its counters already resolved: recording is an atomic add, with no allocation and no
//! family lookup except the first time a status code is seen.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use super::exposition::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
pub use super::service_metrics::ServiceMetrics;
use crate::error::FailureKind;

/// The `region` label of responses no region made (degraded, local, refused).
pub const NO_REGION: &str = "none";

/// Request-duration bucket bounds in seconds: local answers take well under a millisecond,
/// same-region calls a few, cross-region calls tens to hundreds, and the top buckets catch
/// requests that ran into `per_try_timeout` or `request_timeout`.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
    30.0,
];

/// Every `outcome` of `switchyard_upstream_attempts_total`: "ok", the failure kinds, then
/// "cancelled" (the client went away while the attempt was in flight).
pub(super) const OUTCOMES: [&str; 8] = [
    "ok",
    "connect-failure",
    "refused-stream",
    "reset",
    "timeout",
    "5xx",
    "error",
    "cancelled",
];
/// The index of "cancelled" in [`OUTCOMES`].
pub(super) const CANCELLED: usize = 7;

pub(super) fn outcome_index(outcome: Option<FailureKind>) -> usize {
    match outcome {
        None => 0,
        Some(FailureKind::Connect) => 1,
        Some(FailureKind::RefusedStream) => 2,
        Some(FailureKind::Reset) => 3,
        Some(FailureKind::Timeout) => 4,
        Some(FailureKind::Status(_)) => 5,
        Some(FailureKind::Other) => 6,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServiceLabels {
    pub(super) service: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RegionLabels {
    pub(super) service: Arc<str>,
    pub(super) region: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) service: Arc<str>,
    pub(super) region: Arc<str>,
    pub(super) code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AttemptLabels {
    pub(super) service: Arc<str>,
    pub(super) region: Arc<str>,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailoverLabels {
    service: Arc<str>,
    from: Arc<str>,
    to: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: Arc<str>,
    kind: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCounterLabels {
    service: Arc<str>,
    plugin: Arc<str>,
    name: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily = Family<RegionLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The process-wide metrics; see [`metrics`].
pub struct Metrics {
    registry: Registry,
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) duration: HistogramFamily,
    pub(super) attempts: Family<AttemptLabels, Counter>,
    pub(super) retries: Family<ServiceLabels, Counter>,
    failovers: Family<FailoverLabels, Counter>,
    region_healthy: Family<RegionLabels, Gauge>,
    region_active: Family<RegionLabels, Gauge>,
    plugin_errors: Family<PluginLabels, Counter>,
    plugin_counters: Family<PluginCounterLabels, Counter>,
    pub(super) degraded: Family<ServiceLabels, Counter>,
    spans_dropped: Family<ReasonLabels, Counter>,
}

/// The process-wide metrics registry, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let attempts = Family::default();
        let retries = Family::default();
        let failovers = Family::default();
        let region_healthy = Family::default();
        let region_active = Family::default();
        let plugin_errors = Family::default();
        let plugin_counters = Family::default();
        let degraded = Family::default();
        let spans_dropped = Family::default();
        // Counter names go in without `_total`: the encoder adds it to the samples.
        registry.register(
            "switchyard_requests",
            "Requests, by the region that answered (\"none\" when the sidecar answered itself) and status code; code 499: the client went away before its answer (region: the one it was waiting for)",
            requests.clone(),
        );
        registry.register(
            "switchyard_request_duration_seconds",
            "Time from a request's arrival to its response head being ready",
            duration.clone(),
        );
        registry.register(
            "switchyard_upstream_attempts",
            "Attempts sent to regions, by outcome (ok, connect-failure, refused-stream, reset, timeout, 5xx, error, cancelled: the client went away first)",
            attempts.clone(),
        );
        registry.register(
            "switchyard_retries",
            "Attempts after the first one of a request",
            retries.clone(),
        );
        registry.register(
            "switchyard_failovers",
            "Changes of the region that default routing sends traffic to",
            failovers.clone(),
        );
        registry.register(
            "switchyard_region_healthy",
            "1 when the region can take traffic by health (not unhealthy, ejected or drained)",
            region_healthy.clone(),
        );
        registry.register(
            "switchyard_region_active",
            "1 for the region default routing sends traffic to now",
            region_active.clone(),
        );
        registry.register(
            "switchyard_plugin_errors",
            "Plugin faults (traps, deadlines, bad decisions), by plugin and kind",
            plugin_errors.clone(),
        );
        registry.register(
            "switchyard_plugin_counter",
            "Counters plugins keep (host function counter-add), by service, plugin and counter name",
            plugin_counters.clone(),
        );
        registry.register(
            "switchyard_degraded_responses",
            "Responses the sidecar made itself (x-switchyard-degraded: 1): all made because no region could serve, others except client errors (4xx)",
            degraded.clone(),
        );
        registry.register(
            "switchyard_trace_spans_dropped",
            "Trace spans not delivered to the OTLP collector, by reason (queue-full, export-failed, collector-down)",
            spans_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            attempts,
            retries,
            failovers,
            region_healthy,
            region_active,
            plugin_errors,
            plugin_counters,
            degraded,
            spans_dropped,
        }
    }

    /// Counts one response sent to a client and observes its duration.
    pub fn request(&self, service: &str, region: &str, code: u16, elapsed: Duration) {
        let labels = RegionLabels {
            service: service.into(),
            region: region.into(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                service: labels.service,
                region: labels.region,
                code,
            })
            .inc();
    }

    /// Counts one attempt; an `outcome` outside the known set is counted as "error".
    pub fn attempt(&self, service: &str, region: &str, outcome: &str) {
        let outcome = OUTCOMES
            .iter()
            .find(|o| **o == outcome)
            .copied()
            .unwrap_or("error");
        self.attempts
            .get_or_create(&AttemptLabels {
                service: service.into(),
                region: region.into(),
                outcome,
            })
            .inc();
    }

    pub fn retry(&self, service: &str) {
        self.retries
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .inc();
    }

    /// Counts a change of the active region (`"none"` when there is none).
    pub fn failover(&self, service: &str, from: &str, to: &str) {
        self.failovers
            .get_or_create(&FailoverLabels {
                service: service.into(),
                from: from.into(),
                to: to.into(),
            })
            .inc();
    }

    /// Creates every `from` -> `to` failover series of a service at 0. Prometheus' `increase()`
    /// and `rate()` need a series to exist before it counts: otherwise the first failover, the
    /// one an alert is for, would be the series' first sample and read as no change.
    pub fn prepare_failovers(&self, service: &str, regions: &[&str]) {
        let service: Arc<str> = service.into();
        for from in regions {
            for to in regions.iter().filter(|to| *to != from) {
                self.failovers.get_or_create_owned(&FailoverLabels {
                    service: service.clone(),
                    from: (*from).into(),
                    to: (*to).into(),
                });
            }
        }
    }

    /// Creates a plugin's error series at 0, one per kind, for the reason given at
    /// [`Metrics::prepare_failovers`].
    pub fn prepare_plugin_errors(&self, plugin: &str, kinds: &[&str]) {
        let plugin: Arc<str> = plugin.into();
        for kind in kinds {
            self.plugin_errors.get_or_create_owned(&PluginLabels {
                plugin: plugin.clone(),
                kind: (*kind).into(),
            });
        }
    }

    /// Sets `switchyard_region_healthy` and `switchyard_region_active` for one region.
    pub fn region_state(&self, service: &str, region: &str, healthy: bool, active: bool) {
        let labels = RegionLabels {
            service: service.into(),
            region: region.into(),
        };
        self.region_healthy
            .get_or_create(&labels)
            .set(i64::from(healthy));
        self.region_active
            .get_or_create(&labels)
            .set(i64::from(active));
    }

    /// Forgets a region's gauges (it left the config), so it stops showing as healthy or active.
    pub fn forget_region(&self, service: &str, region: &str) {
        let labels = RegionLabels {
            service: service.into(),
            region: region.into(),
        };
        self.region_healthy.remove(&labels);
        self.region_active.remove(&labels);
    }

    /// Counts a plugin fault; `kind` should come from a small fixed set ("trap", "timeout", ...).
    pub fn plugin_error(&self, plugin: &str, kind: &str) {
        self.plugin_errors
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// The counter a plugin's `counter-add(name)` adds to. Cardinality is bounded by the
    /// caller: a handful of names per plugin.
    pub fn plugin_counter(&self, service: &str, plugin: &str, name: &str) -> Counter {
        self.plugin_counters
            .get_or_create_owned(&PluginCounterLabels {
                service: service.into(),
                plugin: plugin.into(),
                name: name.into(),
            })
    }

    pub fn degraded(&self, service: &str) {
        self.degraded
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .inc();
    }

    /// The counter of spans dropped for `reason`, resolved once by the trace pipeline.
    pub(crate) fn spans_dropped(&self, reason: &'static str) -> Counter {
        self.spans_dropped
            .get_or_create_owned(&ReasonLabels { reason })
    }

    /// Everything in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Everything in the Prometheus text format 0.0.4, for scrapers that do not ask for
    /// OpenMetrics (curl, older agents).
    pub fn encode_prometheus(&self) -> String {
        super::exposition::openmetrics_to_prometheus(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn service_recorders_feed_the_spec_names() {
        let m = metrics();
        let svc = m.service("metrics-test", ["west", "east"]);
        svc.request(Some(0), 200, Duration::from_millis(3));
        svc.request(Some(0), 200, Duration::from_millis(3));
        svc.request(None, 503, Duration::from_millis(1));
        svc.request(Some(7), 999, Duration::ZERO);
        svc.attempt(1, Some(FailureKind::Status(502)));
        svc.attempt(1, None);
        svc.retry();
        svc.degraded();
        m.failover("metrics-test", "west", "east");
        m.region_state("metrics-test", "west", false, false);
        m.region_state("metrics-test", "east", true, true);
        m.plugin_error("read-preference", "trap");

        let text = m.encode();
        let get = |p: &str| sample(&text, p);
        assert_eq!(
            get("switchyard_requests_total{service=\"metrics-test\",region=\"west\",code=\"200\"}"),
            Some(2.0)
        );
        assert_eq!(
            get("switchyard_requests_total{service=\"metrics-test\",region=\"none\",code=\"503\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_requests_total{service=\"metrics-test\",region=\"none\",code=\"999\"}"),
            Some(1.0)
        );
        assert_eq!(
            get(
                "switchyard_request_duration_seconds_count{service=\"metrics-test\",region=\"west\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            get(
                "switchyard_upstream_attempts_total{service=\"metrics-test\",region=\"east\",outcome=\"5xx\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                "switchyard_upstream_attempts_total{service=\"metrics-test\",region=\"east\",outcome=\"ok\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                "switchyard_upstream_attempts_total{service=\"metrics-test\",region=\"west\",outcome=\"timeout\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            get("switchyard_retries_total{service=\"metrics-test\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_degraded_responses_total{service=\"metrics-test\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_failovers_total{service=\"metrics-test\",from=\"west\",to=\"east\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_region_healthy{service=\"metrics-test\",region=\"east\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_region_active{service=\"metrics-test\",region=\"west\"}"),
            Some(0.0)
        );
        assert_eq!(
            get("switchyard_plugin_errors_total{plugin=\"read-preference\",kind=\"trap\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("switchyard_failovers_total{service=\"metrics-test\",from=\"east\",to=\"west\"}"),
            Some(0.0),
            "every failover series exists from the start, at 0"
        );
        m.prepare_plugin_errors("fresh-plugin", &["trap", "deadline"]);
        let text = m.encode();
        assert!(
            text.contains(
                "switchyard_plugin_errors_total{plugin=\"fresh-plugin\",kind=\"deadline\"} 0"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\""), "histogram buckets: {text}");
        assert!(
            !text.contains("region=\"none\",outcome="),
            "no attempts go to \"none\""
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn string_recorders_bound_the_outcome_label() {
        let m = metrics();
        m.attempt("outcome-test", "west", "connect-failure");
        m.attempt("outcome-test", "west", "something-new");
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "switchyard_upstream_attempts_total{service=\"outcome-test\",region=\"west\",outcome=\"connect-failure\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "switchyard_upstream_attempts_total{service=\"outcome-test\",region=\"west\",outcome=\"error\"}"
            ),
            Some(1.0)
        );
        assert!(!text.contains("something-new"));
    }

    #[test]
    fn outcome_labels_match_failure_kinds() {
        for kind in [
            FailureKind::Connect,
            FailureKind::RefusedStream,
            FailureKind::Reset,
            FailureKind::Timeout,
            FailureKind::Status(503),
            FailureKind::Other,
        ] {
            assert_eq!(OUTCOMES[outcome_index(Some(kind))], kind.as_str());
        }
    }
}
