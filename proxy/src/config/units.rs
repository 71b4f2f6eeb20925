//! Durations (`"250ms"`, `"2s"`, `"5m"`, `"1h"`) and sizes (`"64KiB"`, `"100KB"`) as written in the config.
//!
//! Both are deliberately strict: a whole number immediately followed by a unit, nothing else.
//! Fractions, spaces and unit spellings like `sec` are rejected rather than guessed at, because a
//! misread timeout is a production incident while a refused config is a one-line fix.

use std::time::Duration;

const DURATION_EXPECTED: &str = "expected a number followed by ms, s, m or h";
const SIZE_EXPECTED: &str =
    "expected a number followed by B, KB, MB, GB, KiB, MiB or GiB (KB = 1000 bytes, KiB = 1024)";

/// Parses `"<digits><unit>"` with unit `ms`, `s`, `m` or `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(text);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(duration_error(text)),
    };
    if digits.is_empty() {
        return Err(duration_error(text));
    }
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} is too large"))?;
    count
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

fn duration_error(text: &str) -> String {
    if let Some(millis) = fractional_millis(text) {
        return format!(
            "invalid duration {text:?}: {DURATION_EXPECTED}; fractions are not accepted, write \"{millis}ms\""
        );
    }
    format!("invalid duration {text:?}: {DURATION_EXPECTED}")
}

/// For `"1.5s"`, the whole number of milliseconds it means, so the error can suggest `"1500ms"`.
fn fractional_millis(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let scale: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.')?;
    if fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let denominator = 10u64.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let fraction: u64 = fraction.parse().ok()?;
    let scaled = fraction.checked_mul(scale)?;
    if scaled % denominator != 0 {
        return None;
    }
    whole.checked_mul(scale)?.checked_add(scaled / denominator)
}

/// Parses `"<digits><unit>"` with a decimal (`KB`, `MB`, `GB`) or binary (`KiB`, `MiB`, `GiB`) unit,
/// or plain bytes (`B`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(text);
    let multiplier: u64 = match unit {
        "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("invalid size {text:?}: {SIZE_EXPECTED}")),
    };
    if digits.is_empty() {
        return Err(format!("invalid size {text:?}: {SIZE_EXPECTED}"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(multiplier))
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Splits leading ASCII digits from the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_rejected_with_a_clear_message() {
        for bad in [
            "2 sec", "2", "s", "", "-1s", "2sec", "2S", " 2s", "2s ", "1d", "+1s", "2ms5",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(
                err,
                format!("invalid duration {bad:?}: expected a number followed by ms, s, m or h"),
                "{bad}"
            );
        }
    }

    #[test]
    fn fractional_durations_suggest_milliseconds() {
        assert_eq!(
            parse_duration("1.5s").unwrap_err(),
            "invalid duration \"1.5s\": expected a number followed by ms, s, m or h; \
             fractions are not accepted, write \"1500ms\""
        );
        assert!(
            parse_duration("0.25m")
                .unwrap_err()
                .ends_with("write \"15000ms\"")
        );
        // Not expressible in whole milliseconds: no suggestion.
        assert!(!parse_duration("1.0001s").unwrap_err().contains("write"));
    }

    #[test]
    fn durations_that_overflow_are_errors() {
        assert!(
            parse_duration("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_duration("18446744073709551615h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_decimal_and_binary() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100KB"), Ok(100_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("0B"), Ok(0));
    }

    #[test]
    fn sizes_rejected_with_a_clear_message() {
        for bad in [
            "64", "64 KiB", "64kib", "1.5MiB", "KiB", "", "64KIB", "-1B", "1TB",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid size {bad:?}: expected a number")),
                "{err}"
            );
        }
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
