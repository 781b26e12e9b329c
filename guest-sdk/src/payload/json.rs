//! JSON payloads: GCN unified-schema notices (`gcn.notices.*`) and IGWN
//! alerts, read by dotted path.

use serde_json::Value;

use super::{Format, PayloadError};

/// A parsed JSON document with dotted-path access.
///
/// GCN unified-schema notices put what handlers usually need at the top
/// level: `ra`, `dec` and `ra_dec_error` (degrees), `trigger_time` and
/// `alert_datetime` (ISO 8601 UTC), `mission`, `instrument`, `$schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(Value);

impl Json {
    /// Parse a JSON document; the error names the line and column.
    pub fn parse(bytes: &[u8]) -> Result<Json, PayloadError> {
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| PayloadError::new(Format::Json, e.to_string()))
    }

    /// Wrap an existing value, for example one built with `serde_json::json!`
    /// in a test.
    pub fn from_value(value: Value) -> Json {
        Json(value)
    }

    /// The whole document.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The value at a dotted `path`: object keys and array indexes separated
    /// by `.`, such as `ra` or `event.classification.BNS` or `id.0`. The empty
    /// path is the whole document. For keys that contain a `.`, use
    /// [`Value::pointer`] on [`Json::value`].
    pub fn get(&self, path: &str) -> Option<&Value> {
        if path.is_empty() {
            return Some(&self.0);
        }
        path.split('.')
            .try_fold(&self.0, |value, segment| match value {
                Value::Object(map) => map.get(segment),
                // Digits only: `usize::from_str` would also take `+1`.
                Value::Array(items) if segment.bytes().all(|b| b.is_ascii_digit()) => {
                    items.get(segment.parse::<usize>().ok()?)
                }
                _ => None,
            })
    }

    /// The string at `path`; `None` when absent or not a string.
    pub fn str(&self, path: &str) -> Option<&str> {
        self.get(path)?.as_str()
    }

    /// The number at `path`; `None` when absent or not a number (a numeric
    /// string is not converted).
    pub fn f64(&self, path: &str) -> Option<f64> {
        self.get(path)?.as_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::iso_time_to_unix_millis;
    use crate::payload::tests::{sample, samples_in};

    #[test]
    fn reads_einstein_probe_alert() {
        let json = Json::parse(&sample("json/einstein_probe_wxt-alert-01709259773.json")).unwrap();
        assert_eq!(json.f64("ra"), Some(184.664));
        assert_eq!(json.f64("dec"), Some(-6.146));
        assert_eq!(json.f64("ra_dec_error"), Some(0.05174976));
        assert_eq!(json.str("instrument"), Some("WXT"));
        assert_eq!(json.str("mission"), None);
        assert_eq!(json.str("id.0"), Some("01709259773"));
        assert_eq!(json.f64("image_energy_range.1"), Some(4.0));
        assert_eq!(
            json.str("$schema"),
            Some(
                "https://gcn.nasa.gov/schema/v4.1.0/gcn/notices/einstein_probe/wxt/alert.schema.json"
            )
        );
        let time = json.str("trigger_time").unwrap();
        assert_eq!(iso_time_to_unix_millis(time), Some(1_775_735_111_949));
    }

    #[test]
    fn reads_nested_igwn_alert() {
        let json = Json::parse(&sample("json/igwn_gwalert-S230518h-initial.json")).unwrap();
        assert_eq!(json.str("superevent_id"), Some("S230518h"));
        assert_eq!(json.str("event.pipeline"), Some("pycbc"));
        assert_eq!(
            json.f64("event.classification.NSBH"),
            Some(0.8642645059209272)
        );
        assert_eq!(json.str("event.instruments.1"), Some("L1"));
        assert_eq!(json.get("event.duration"), Some(&Value::Null));
        assert_eq!(json.f64("ra"), None);
    }

    #[test]
    fn unified_notices_have_trigger_time_and_schema() {
        for (name, bytes) in samples_in("json") {
            let json = Json::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            if name.starts_with("igwn_") {
                continue;
            }
            assert!(json.str("$schema").is_some(), "{name}");
            let time = json.str("trigger_time").unwrap();
            assert!(iso_time_to_unix_millis(time).is_some(), "{name}: {time}");
            // A position comes whole or not at all.
            assert_eq!(
                json.f64("ra").is_some(),
                json.f64("dec").is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn paths_that_do_not_match_are_none() {
        let json = Json::from_value(serde_json::json!({"a": [{"b": "x"}], "n": "1.5"}));
        assert_eq!(json.str("a.0.b"), Some("x"));
        assert_eq!(json.get(""), Some(json.value()));
        for path in ["a.1.b", "a.x", "a.0.b.c", "missing", "a..b"] {
            assert_eq!(json.get(path), None, "{path}");
        }
        assert_eq!(json.f64("n"), None);
        assert_eq!(json.str("a"), None);
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let err = Json::parse(b"{\n  \"ra\": 12,,\n}").unwrap_err();
        assert_eq!(err.format(), Format::Json);
        assert_eq!(err.detail(), "key must be a string at line 2 column 12");
    }
}
