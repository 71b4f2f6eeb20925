//! Bad files: every error reported at once, each at the exact line and column of the culprit.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::tests::{MINIMAL, Scratch, errors};
use super::*;

#[test]
fn syntax_error_is_one_error_with_position() {
    let all = errors("workers = 1\nname = \"unterminated\n");
    assert_eq!(
        all,
        ["sy.toml:2:21: invalid TOML: invalid basic string, expected `\"`"]
    );
    let all = errors("a = 1\na = 2\n");
    assert_eq!(all, ["sy.toml:2:1: invalid TOML: duplicate key"]);
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = r#"shutdown_grace = "2 sec"
workers = 2000

[admin]
listen = "localhost:9901"

[[services]]
name = "orders"
listen = "127.0.0.1:8080"
colour = "blue"

[services.retry]
retry_attempts = 3
max_attempts = 0
retry_on = ["reset", "teapot"]

[[services.regions]]
name = "westus"
priority = -1
url = "ftp://x"
"#;
    let expected = [
        r#"sy.toml:1:18: invalid duration "2 sec": expected a number followed by ms, s, m or h"#,
        r#"sy.toml:2:11: "workers" must be between 0 and 1024, got 2000"#,
        r#"sy.toml:5:10: invalid listen address "localhost:9901": expected IP:port such as 127.0.0.1:8080 (host names are not resolved)"#,
        r#"sy.toml:10:1: unknown key "colour" in [[services]]; valid keys: name, listen, request_timeout, tls, health, outlier, failback, retry, degraded, regions, plugins"#,
        r#"sy.toml:13:1: unknown key "retry_attempts" in [services.retry]; valid keys: max_attempts, per_try_timeout, budget_ratio, min_retries_per_sec, retry_on, buffer_body_limit"#,
        r#"sy.toml:14:16: "max_attempts" must be between 1 and 10, got 0"#,
        r#"sy.toml:15:22: unknown retry_on condition "teapot": expected one of connect-failure, refused-stream, reset, timeout, 5xx"#,
        r#"sy.toml:19:12: "priority" must be at least 0, got -1"#,
        r#"sy.toml:20:7: invalid url "ftp://x": scheme "ftp" is not http or https"#,
    ];
    assert_eq!(errors(text), expected);
}

#[test]
fn wrong_types_point_at_the_value() {
    let all = errors(
        "[admin]\nlisten = 9901\n[[services]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[[services.regions]]\nname = \"r\"\nurl = \"http://h\"\nwrite = \"yes\"\n",
    );
    assert_eq!(
        all,
        [
            "sy.toml:2:10: expected a string for \"listen\", found an integer",
            "sy.toml:9:9: expected true or false for \"write\", found a string",
        ]
    );
}

#[test]
fn missing_pieces() {
    assert_eq!(
        errors(""),
        ["sy.toml:1:1: no services: add at least one [[services]] table"]
    );
    let all = errors("\n[[services]]\nlisten = \"127.0.0.1:1\"\n");
    assert_eq!(
        all,
        [
            "sy.toml:2:1: missing key \"name\" in [[services]]",
            "sy.toml:2:1: a service has no regions: add at least one [[services.regions]]",
        ]
    );
    let all = errors(
        "[[services]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[[services.regions]]\nname = \"r\"\n",
    );
    assert_eq!(
        all,
        ["sy.toml:4:1: missing key \"url\" in [[services.regions]]"]
    );
}

#[test]
fn a_region_that_is_this_sidecars_own_listener_is_refused() {
    let text = r#"[admin]
listen = "127.0.0.1:9901"
[[services]]
name = "orders"
listen = "0.0.0.0:8080"
[[services.regions]]
name = "self"
url = "http://localhost:8080/base"
[[services.regions]]
name = "admin"
url = "http://127.0.0.1:9901"
[[services.regions]]
name = "elsewhere"
url = "http://127.0.0.1:8081"
[[services.regions]]
name = "named"
url = "http://orders.internal:8080"
"#;
    let expected = [
        r#"sy.toml:8:7: region url "http://localhost:8080/base" is this sidecar's own listener (service "orders": 0.0.0.0:8080): requests would loop back into it"#,
        r#"sy.toml:11:7: region url "http://127.0.0.1:9901" is this sidecar's own listener (the admin API: 127.0.0.1:9901): requests would loop back into it"#,
    ];
    assert_eq!(errors(text), expected);
}

#[test]
fn duplicates_and_conflicts_point_at_the_second() {
    let text = r#"[admin]
listen = "127.0.0.1:8080"
[[services]]
name = "orders"
listen = "127.0.0.1:8081"
[[services.regions]]
name = "a"
url = "http://h"
write = true
[[services.regions]]
name = "a"
url = "http://h2"
write = true
[[services]]
name = "orders"
listen = "0.0.0.0:8081"
[[services.regions]]
name = "b"
url = "http://h"
[[services]]
name = "zero"
listen = "127.0.0.1:0"
[[services.regions]]
name = "b"
url = "http://h"
[[services]]
name = "zero2"
listen = "127.0.0.1:0"
[[services.regions]]
name = "b"
url = "http://h"
[[services]]
name = "admin-clash"
listen = "127.0.0.1:8080"
[[services.regions]]
name = "b"
url = "http://h"
"#;
    let expected = [
        r#"sy.toml:11:8: duplicate region name "a" in service "orders" (first on line 7)"#,
        r#"sy.toml:13:9: only one region per service may have write = true; region "a" (line 9) already does"#,
        r#"sy.toml:15:8: duplicate service name "orders" (first on line 4)"#,
        r#"sy.toml:16:10: listen address 0.0.0.0:8081 is already used by service "orders" (line 5: 127.0.0.1:8081)"#,
        r#"sy.toml:34:10: listen address 127.0.0.1:8080 is already used by the admin API (line 2: 127.0.0.1:8080)"#,
    ];
    assert_eq!(errors(text), expected);
}

#[test]
fn default_admin_address_clashes_with_a_service() {
    let text = MINIMAL.replace("127.0.0.1:8080", "127.0.0.1:9901");
    assert_eq!(
        errors(&text),
        [
            r#"sy.toml:4:10: listen address 127.0.0.1:9901 is already used by the admin API (by default: 127.0.0.1:9901)"#
        ]
    );
}

#[test]
fn value_checks() {
    let cases: &[(&str, &str)] = &[
        (
            "[services.health]\npath = \"healthz\"",
            "10:8: health path \"healthz\" must start with '/'",
        ),
        (
            "[services.health]\ninterval = \"0s\"",
            "10:12: \"interval\" must be greater than 0",
        ),
        (
            "[services.health]\ntimeout = \"1.5s\"",
            "10:11: invalid duration \"1.5s\": expected a number followed by ms, s, m or h; fractions are not accepted, write \"1500ms\"",
        ),
        (
            "[services.health]\nhealthy_threshold = 0",
            "10:21: \"healthy_threshold\" must be at least 1, got 0",
        ),
        (
            "[services.health]\nexpect_status = \"200-600\"",
            "10:17: invalid expect_status \"200-600\": status codes must be between 100 and 599",
        ),
        (
            "[services.health]\ninterval = 5",
            "10:12: expected a duration string such as \"2s\" for \"interval\", found an integer",
        ),
        (
            "[services.outlier]\nbase_ejection = \"2m\"\nmax_ejection = \"1m\"",
            "11:16: max_ejection (1m) must not be shorter than base_ejection (2m)",
        ),
        (
            "[services.outlier]\nbase_ejection = \"2m\"",
            "10:17: max_ejection (1m) must not be shorter than base_ejection (2m)",
        ),
        (
            "[services.retry]\nbudget_ratio = 1.5",
            "10:16: \"budget_ratio\" must be between 0 and 1, got 1.5",
        ),
        (
            "[services.retry]\nbudget_ratio = nan",
            "10:16: \"budget_ratio\" must be between 0 and 1, got NaN",
        ),
        (
            "[services.retry]\nper_try_timeout = \"0ms\"",
            "10:19: \"per_try_timeout\" must be greater than 0",
        ),
        (
            "[services.retry]\nbuffer_body_limit = \"64 KiB\"",
            "10:21: invalid size \"64 KiB\": expected a number followed by B, KB, MB, GB, KiB, MiB or GiB (KB = 1000 bytes, KiB = 1024)",
        ),
        (
            "[services.retry]\nretry_on = \"5xx\"",
            "10:12: expected an array of strings for \"retry_on\", found a string",
        ),
        (
            "[services.degraded]\nstatus = 700",
            "10:10: \"status\" must be between 200 and 599, got 700",
        ),
        (
            "[services.degraded]\nstatus = 204\nbody = \"x\"",
            "11:8: a 204 response has no body: remove body",
        ),
        (
            "[services.degraded]\nstatus = 101",
            "10:10: \"status\" must be between 200 and 599, got 101",
        ),
        (
            "[services.degraded]\ncontent_type = \"a\\nb\"",
            "10:16: invalid content_type \"a\\nb\": not a valid header value",
        ),
        (
            "[telemetry]\nlog_format = \"xml\"",
            "10:14: invalid log_format \"xml\": expected \"text\" or \"json\"",
        ),
        (
            "[[services.plugins]]\npath = \"nope.wasm\"\non_error = \"ignore\"",
            "11:12: invalid on_error \"ignore\": expected \"fail-open\" or \"fail-closed\"",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{MINIMAL}{extra}\n");
        let all = errors(&text);
        let hit = all.iter().any(|e| e == &format!("sy.toml:{expected}"));
        assert!(hit, "wanted sy.toml:{expected}\ngot {all:#?}");
    }
}

#[test]
fn files_must_exist_and_pair_up() {
    let dir = Scratch::new(&["c.pem"]);
    let text = format!(
        "{}tls = {{ client_cert = \"c.pem\", ca_file = \"missing.pem\" }}\n[[services.plugins]]\npath = \"p.wasm\"\n",
        MINIMAL.replace("http://127.0.0.1:9001", "https://h")
    );
    let all: Vec<String> = parse(&dir.config(), &text)
        .unwrap_err()
        .0
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect();
    let missing = dir.0.join("missing.pem");
    let plugin = dir.0.join("p.wasm");
    assert_eq!(
        all,
        [
            "9:23: client_cert requires client_key".to_owned(),
            format!("9:42: file not found: {}", missing.display()),
            format!("11:8: file not found: {}", plugin.display()),
        ]
    );
}

#[test]
fn tls_on_plain_http_region() {
    let dir = Scratch::new(&["ca.pem"]);
    let text = format!("{MINIMAL}tls = {{ ca_file = \"ca.pem\" }}\n");
    let err = parse(&dir.config(), &text).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!((err.0[0].line, err.0[0].column), (9, 7));
    assert!(
        err.0[0]
            .message
            .starts_with("tls is set but url \"http://127.0.0.1:9001\" is plain http")
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let all = errors(&format!(
        "{MINIMAL}[services.degraded]\nbody = \"é\"\nstatus = \"x\"\n"
    ));
    assert_eq!(
        all,
        ["sy.toml:11:10: expected an integer for \"status\", found a string"]
    );
    let all = errors("x = \"éé\" ; y\n");
    assert_eq!(all.len(), 1);
    assert!(all[0].starts_with("sy.toml:1:10: invalid TOML"), "{all:?}");
}

#[test]
fn unknown_key_in_region_tls_and_top_level() {
    let text = format!(
        "bogus = 1\n{}",
        MINIMAL.replace("name = \"westus\"", "name = \"westus\"\nweight = 3")
    );
    assert_eq!(
        errors(&text),
        [
            "sy.toml:1:1: unknown key \"bogus\" in the top level; valid keys: shutdown_grace, workers, admin, telemetry, services",
            "sy.toml:9:1: unknown key \"weight\" in [[services.regions]]; valid keys: name, priority, url, write, tls",
        ]
    );
}

#[test]
fn plugin_config_must_be_a_json_compatible_table() {
    let dir = Scratch::new(&["p.wasm"]);
    let text =
        format!("{MINIMAL}[[services.plugins]]\npath = \"p.wasm\"\nconfig = {{ a = [1, inf] }}\n");
    let err = parse(&dir.config(), &text).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:11:20: inf cannot be passed to a plugin: JSON has no inf or nan\n",
            dir.config().display()
        )
    );
    let text = format!("{MINIMAL}[[services.plugins]]\npath = \"p.wasm\"\nconfig = \"x\"\n");
    let err = parse(&dir.config(), &text).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(":11:10: expected a table for \"config\", found a string\n"),
        "{err}"
    );
}

#[test]
fn display_is_one_line_per_error() {
    let err = parse(Path::new("dir/sy.toml"), "workers = -1\nbogus = 1\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dir/sy.toml:1:1: no services: add at least one [[services]] table\n\
         dir/sy.toml:1:11: \"workers\" must be between 0 and 1024, got -1\n\
         dir/sy.toml:2:1: unknown key \"bogus\" in the top level; valid keys: shutdown_grace, workers, admin, telemetry, services\n"
    );
}
