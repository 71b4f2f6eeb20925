//! Helpers for reading a plugin's config the way the sidecar reads its own.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};

/// Deserializes the JSON `config` given to [`Plugin::init`](crate::Plugin::init) into `T`,
/// with the error as the message `switchyard check` prints. Use
/// `#[serde(deny_unknown_fields)]` on `T`: unknown keys are errors, as in the sidecar config.
pub fn parse<T: DeserializeOwned>(config: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(config).map_err(|e| format!("invalid plugin config: {e}"))
}

/// Parses a duration written as in the sidecar config: a whole number and a unit, `ms`, `s`,
/// `m` or `h` (`"250ms"`, `"5s"`, `"2m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let invalid = || format!("invalid duration {text:?}: expected e.g. \"250ms\", \"5s\", \"2m\"");
    let n: u64 = number.parse().map_err(|_| invalid())?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => None,
    }
    .ok_or_else(invalid)
}

/// `#[serde(deserialize_with = "switchyard_sdk::config::duration")]` for a duration string.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(D::Error::custom)
}

/// `#[serde(default, deserialize_with = "switchyard_sdk::config::optional_duration")]` for an
/// optional duration string.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in [
            "",
            "5",
            "s",
            "1.5s",
            "-1s",
            "5 s",
            "5sec",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn config_structs_use_the_helpers() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Config {
            #[serde(deserialize_with = "duration")]
            window: Duration,
            #[serde(default, deserialize_with = "optional_duration")]
            grace: Option<Duration>,
        }
        let config: Config = parse(serde_json::json!({ "window": "5s" })).expect("valid");
        assert_eq!(
            (config.window, config.grace),
            (Duration::from_secs(5), None)
        );
        let err = parse::<Config>(serde_json::json!({ "window": "5x" })).expect_err("refused");
        assert!(err.contains("invalid duration \"5x\""), "{err}");
        let err =
            parse::<Config>(serde_json::json!({ "window": "5s", "x": 1 })).expect_err("refused");
        assert!(err.contains("unknown field `x`"), "{err}");
    }
}
