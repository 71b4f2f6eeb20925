//! Reading `/metrics`: a strict parser of the Prometheus text format 0.0.4.
//!
//! ```ignore
//! let m = Scrape::parse(&proxy.metrics().await?)?;
//! m.value("switchyard_requests_total", &[("service", "orders"), ("region", "westus"), ("code", "200")]);
//! ```

use std::collections::{BTreeMap, HashMap};

/// A sample's labels, by name.
pub type Labels = BTreeMap<String, String>;

/// Samples of one scrape by metric name and label set, with each family's `# TYPE`.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `# TYPE` of each family.
    pub types: HashMap<String, String>,
    /// Samples by name (`_bucket`, `_sum`, `_count` apart), each with its labels.
    pub samples: HashMap<String, Vec<(Labels, f64)>>,
}

impl Scrape {
    /// Parses a scrape strictly: every sample line is `name{labels} value` and belongs to a
    /// family with a `# TYPE`, and histograms are cumulative with `+Inf` equal to `_count`.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        parse(text)
    }

    /// The sample of `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }
}

fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    for (n, line) in text.lines().enumerate() {
        let at = |e: &str| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown type"));
            }
            if scrape
                .types
                .insert(name.to_owned(), kind.to_owned())
                .is_some()
            {
                return Err(at("second TYPE for a family"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = split_sample(line).ok_or_else(|| at("not a sample"))?;
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| at("no value"))?;
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| scrape.types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !scrape.types.contains_key(family) {
            return Err(at("sample before or without its # TYPE"));
        }
        scrape
            .samples
            .entry(name.to_owned())
            .or_default()
            .push((labels, value));
    }
    check_histograms(&scrape)?;
    Ok(scrape)
}

fn split_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, &str)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        // Bounded by the line length: every iteration consumes at least one character.
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' {
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = &inner[key_start..key_end];
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            }
            labels.insert(key.to_owned(), value);
        }
        rest = &inner[end? + 1..];
    }
    Some((name, labels, rest.trim_start()))
}

fn check_histograms(scrape: &Scrape) -> Result<(), String> {
    for (family, _) in scrape.types.iter().filter(|(_, t)| *t == "histogram") {
        let buckets = scrape
            .samples
            .get(&format!("{family}_bucket"))
            .cloned()
            .unwrap_or_default();
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (mut labels, count) in buckets {
            let le = labels
                .remove("le")
                .ok_or(format!("{family}: bucket without le"))?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| format!("{family}: le {le}"))?
            };
            series.entry(labels).or_default().push((le, count));
        }
        for (labels, mut b) in series {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            if b.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels:?}: buckets not cumulative"));
            }
            let inf = b.last().filter(|(le, _)| le.is_infinite()).map(|(_, c)| *c);
            let want: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = scrape.value(&format!("{family}_count"), &want);
            if inf.is_none() || inf != count {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket {inf:?} != count {count:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_rejects_what_prometheus_would() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"uote\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
        let m = parse(good).expect("valid");
        assert_eq!(
            m.value("a_total", &[("x", "1"), ("y", "q\"uote")]),
            Some(3.0)
        );
        assert_eq!(m.value("h_count", &[]), Some(2.0));
        assert!(parse("a_total 1\n").is_err(), "no TYPE");
        assert!(
            parse("# TYPE a gauge\na{x=1} 1\n").is_err(),
            "unquoted label"
        );
        assert!(parse("# TYPE a gauge\na one\n").is_err(), "bad value");
        assert!(
            parse("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n").is_err(),
            "+Inf != count"
        );
    }
}
