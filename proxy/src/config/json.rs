//! A plugin's `config` table as the JSON its `init` receives.
//!
//! JSON has no datetimes (they become their TOML text) and no inf or nan (reported as errors
//! rather than silently turned into `null`).

use toml::Spanned;
use toml::de::DeValue;

use super::reader::Diags;

/// Converts a TOML value to JSON for plugin `config`; datetimes become strings.
pub(crate) fn to_json(d: &mut Diags<'_>, value: &Spanned<DeValue<'_>>) -> serde_json::Value {
    use serde_json::Value;
    match value.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(dt) => Value::String(dt.to_string()),
        DeValue::Integer(i) => {
            let n = i128::from_str_radix(i.as_str(), i.radix()).ok();
            if let Some(n) = n.and_then(|n| i64::try_from(n).ok()) {
                Value::from(n)
            } else if let Some(n) = n.and_then(|n| u64::try_from(n).ok()) {
                Value::from(n)
            } else {
                d.error(&value.span(), "integer does not fit in 64 bits");
                Value::Null
            }
        }
        DeValue::Float(f) => {
            let number = f
                .as_str()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64);
            match number {
                Some(n) => Value::Number(n),
                None => {
                    d.error(
                        &value.span(),
                        format!(
                            "{} cannot be passed to a plugin: JSON has no inf or nan",
                            f.as_str()
                        ),
                    );
                    Value::Null
                }
            }
        }
        DeValue::Array(items) => Value::Array(items.iter().map(|item| to_json(d, item)).collect()),
        DeValue::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(d, v)))
                .collect(),
        ),
    }
}
