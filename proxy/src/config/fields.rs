//! Getters for values that need more than a TOML type: durations, sizes, keyword choices, files.
//!
//! Each returns the default when the key is absent or invalid (after recording the error), so
//! one bad value never hides the errors after it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use super::reader::{Diags, Span, Table};
use super::units::{parse_duration, parse_size};
use super::validate;

/// A duration string such as `"2s"`, with the span of the value when it was written.
pub(crate) fn duration(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    key: &str,
    default: Duration,
) -> (Duration, Option<Span>) {
    let Some(value) = t.value(key) else {
        return (default, None);
    };
    let DeValue::String(text) = value.get_ref() else {
        t.wrong_type(d, key, "a duration string such as \"2s\"", value);
        return (default, None);
    };
    match parse_duration(text) {
        Ok(parsed) => (parsed, Some(value.span())),
        Err(message) => {
            d.error(&value.span(), message);
            (default, None)
        }
    }
}

/// A duration where zero makes no sense (a timeout, an interval).
pub(crate) fn positive_duration(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    key: &str,
    default: Duration,
) -> Duration {
    match duration(d, t, key, default) {
        (parsed, Some(span)) if parsed.is_zero() => {
            d.error(&span, format!("{key:?} must be greater than 0"));
            default
        }
        (parsed, _) => parsed,
    }
}

/// A size string such as `"64KiB"`; a plain integer is taken as bytes.
pub(crate) fn size(d: &mut Diags<'_>, t: &Table<'_, '_>, key: &str, default: usize) -> usize {
    let Some(value) = t.value(key) else {
        return default;
    };
    let parsed = match value.get_ref() {
        DeValue::String(text) => parse_size(text),
        DeValue::Integer(_) => match t.integer(d, key) {
            Some(n) => u64::try_from(n.value).map_err(|_| format!("{key:?} must not be negative")),
            None => return default,
        },
        _ => {
            t.wrong_type(d, key, "a size string such as \"64KiB\"", value);
            return default;
        }
    };
    let parsed =
        parsed.and_then(|n| usize::try_from(n).map_err(|_| format!("{key:?} is too large")));
    match parsed {
        Ok(n) => n,
        Err(message) => {
            d.error(&value.span(), message);
            default
        }
    }
}

/// One of a fixed set of keywords, e.g. `log_format = "text" | "json"`.
pub(crate) fn choice<T: Copy>(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some(text) = t.string(d, key) else {
        return default;
    };
    if let Some((_, value)) = options.iter().find(|(name, _)| *name == text.value) {
        return *value;
    }
    let names: Vec<String> = options
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    d.error(
        &text.span,
        format!(
            "invalid {key} {:?}: expected {}",
            text.value,
            names.join(" or ")
        ),
    );
    default
}

/// A file path resolved against the config folder; reports a missing key or a missing file.
pub(crate) fn existing_file(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    key: &str,
    base: &Path,
    required: bool,
) -> Option<PathBuf> {
    let text = if required {
        t.required_string(d, key)?
    } else {
        t.string(d, key)?
    };
    match validate::existing_file(base, text.value) {
        Ok(path) => Some(path),
        Err(message) => {
            d.error(&text.span, message);
            None
        }
    }
}
