//! sky-region: forward a compact JSON summary of every alert located inside
//! a cone on the sky; drop everything else.
//!
//! Reads GCN unified-schema JSON notices (top-level `ra`, `dec`,
//! `ra_dec_error`) and VOEvents (`WhereWhen` position). An alert is kept when
//! the great-circle distance from the cone's centre to its position is at
//! most `radius`; the summary sent to `sink` is
//!
//! ```json
//! {"mission": "SWIFT", "time": "2022-07-30T15:48:54.89", "ra": 225.0208,
//!  "dec": -69.4969, "error": 0.05, "topic": "...", "partition": 0, "offset": 42}
//! ```
//!
//! `mission` is the notice's `mission`, else the mission folder of its
//! `$schema` (`einstein_probe`), else for a VOEvent the stream of its ivorn
//! (`SWIFT`, `Fermi`, `AMON`); `time` is the event time as written
//! (`trigger_time`, else `alert_datetime`; VOEvent `ISOTime`); `error` is the
//! error radius in degrees. Unknown values are `null`. The original message is
//! not saved.
//!
//! Parameters:
//! - `ra`, `dec`: centre of the cone in degrees, required; `ra` from 0 to
//!   360, `dec` from -90 to 90.
//! - `radius`: cone radius in degrees, required, above 0 and at most 180.
//! - `sink`: name of the forward sink declared for this handler in the host
//!   configuration, default `summaries`.
//!
//! Dropped: other formats, alerts without a position (IGWN alerts, GBM alert
//! notices, retractions), alerts outside the cone. A VOEvent that does not
//! parse, or a position off the sky, is a bad record.
//!
//! Caveat: only the centre of the error region is tested; a large error
//! circle that overlaps the cone but is centred outside it is dropped.

use alerthost_guest::payload::{self, Format, Json, VoEvent};
use alerthost_guest::{Action, Handler, HandlerError, Message, Params};
use serde_json::json;

const PARAMS: [&str; 4] = ["ra", "dec", "radius", "sink"];

/// Forwards summaries of alerts inside a cone.
#[derive(Debug)]
pub struct SkyRegion {
    ra: f64,
    dec: f64,
    radius: f64,
    sink: String,
}

/// What the summary says about one alert.
#[derive(Debug, PartialEq)]
struct Located {
    mission: Option<String>,
    time: Option<String>,
    ra: f64,
    dec: f64,
    error: Option<f64>,
}

impl Handler for SkyRegion {
    fn init(params: &Params) -> Result<Self, String> {
        if let Some((key, _)) = params.iter().find(|(key, _)| !PARAMS.contains(key)) {
            return Err(format!(
                "unknown parameter `{key}`; sky-region takes `ra`, `dec`, `radius` and `sink`"
            ));
        }
        let region = SkyRegion {
            ra: in_range(params, "ra", 0.0..=360.0)?,
            dec: in_range(params, "dec", -90.0..=90.0)?,
            radius: in_range(params, "radius", 0.0..=180.0)?,
            sink: params.get("sink").unwrap_or("summaries").trim().to_owned(),
        };
        if region.radius == 0.0 {
            return Err("parameter `radius` must be above 0".into());
        }
        if region.sink.is_empty() {
            return Err("parameter `sink` is empty".into());
        }
        Ok(region)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        let located = match payload::detect(&msg.value) {
            Format::Json => Json::parse(&msg.value)
                .map(|json| from_json(&json))
                .map_err(|e| HandlerError::bad_record(e.to_string()))?,
            Format::VoEvent => VoEvent::parse(&msg.value)
                .map(|event| from_voevent(&event))
                .map_err(|e| HandlerError::bad_record(e.to_string()))?,
            _ => None,
        };
        let Some(alert) = located else {
            return Ok(Vec::new());
        };
        if !(0.0..=360.0).contains(&alert.ra) || !(-90.0..=90.0).contains(&alert.dec) {
            return Err(HandlerError::bad_record(format!(
                "position ra={}, dec={} is not on the sky",
                alert.ra, alert.dec
            )));
        }
        if angular_distance(self.ra, self.dec, alert.ra, alert.dec) > self.radius {
            return Ok(Vec::new());
        }
        let summary = json!({
            "mission": alert.mission,
            "time": alert.time,
            "ra": alert.ra,
            "dec": alert.dec,
            "error": alert.error,
            "topic": msg.topic,
            "partition": msg.partition,
            "offset": msg.offset,
        });
        Ok(vec![
            Action::forward(&self.sink).with_value(summary.to_string()),
        ])
    }
}

alerthost_guest::export_handler!(SkyRegion);

/// Parameter `key` as a number within `range`, or an error naming it.
fn in_range(
    params: &Params,
    key: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, String> {
    let value = params.parse::<f64>(key)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "parameter `{key}` = {value} is out of range {} to {} (degrees)",
            range.start(),
            range.end()
        ))
    }
}

/// The position of a unified-schema notice; `None` without `ra` and `dec`.
fn from_json(json: &Json) -> Option<Located> {
    Some(Located {
        ra: json.f64("ra")?,
        dec: json.f64("dec")?,
        error: json.f64("ra_dec_error"),
        time: json
            .str("trigger_time")
            .or_else(|| json.str("alert_datetime"))
            .map(str::to_owned),
        mission: json
            .str("mission")
            .or_else(|| json.str("$schema").and_then(schema_mission))
            .map(str::to_owned),
    })
}

/// The mission folder of a GCN schema URL:
/// `.../gcn/notices/einstein_probe/wxt/alert.schema.json` → `einstein_probe`.
fn schema_mission(schema: &str) -> Option<&str> {
    let (_, rest) = schema.split_once("/notices/")?;
    rest.split('/').next().filter(|m| !m.is_empty())
}

/// The position of a VOEvent; `None` when it has none.
fn from_voevent(event: &VoEvent) -> Option<Located> {
    let position = event.position?;
    // GCN fills the position of notices that carry none (Fermi GBM alerts)
    // with RA 0, Dec 0 and error 0; that is not a location.
    if (position.ra, position.dec, position.error_radius) == (0.0, 0.0, Some(0.0)) {
        return None;
    }
    Some(Located {
        mission: ivorn_stream(&event.ivorn).map(str::to_owned),
        time: event.iso_time.clone(),
        ra: position.ra,
        dec: position.dec,
        error: position.error_radius,
    })
}

/// The stream of an ivorn: `ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos` → `SWIFT`.
fn ivorn_stream(ivorn: &str) -> Option<&str> {
    let (path, _) = ivorn.strip_prefix("ivo://")?.split_once('#')?;
    let (_, stream) = path.rsplit_once('/')?;
    (!stream.is_empty()).then_some(stream)
}

/// Great-circle distance in degrees between two (ra, dec) points given in
/// degrees, by the haversine formula (well conditioned for small distances,
/// which is what a cone test needs).
fn angular_distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (dec1, dec2) = (dec1.to_radians(), dec2.to_radians());
    let half_ddec = (dec2 - dec1) / 2.0;
    let half_dra = (ra2 - ra1).to_radians() / 2.0;
    let h = half_ddec.sin().powi(2) + dec1.cos() * dec2.cos() * half_dra.sin().powi(2);
    // Rounding can push `h` a hair above 1 for antipodal points.
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alerthost_guest::Forward;
    use serde_json::Value;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/samples");

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}/{name}")).unwrap()
    }

    fn cone(ra: &str, dec: &str, radius: &str) -> SkyRegion {
        SkyRegion::init(&Params::new([("ra", ra), ("dec", dec), ("radius", radius)])).unwrap()
    }

    /// The summary forwarded for `value`, or `None` when it is dropped.
    fn summary(region: &mut SkyRegion, value: Vec<u8>) -> Option<Value> {
        let msg = Message::new("gcn.notices.any", value).at(2, 77);
        let mut actions = region.handle(&msg).unwrap();
        assert!(actions.len() <= 1, "{actions:?}");
        let Action::Forward(Forward {
            sink,
            key: None,
            value: Some(value),
            headers: None,
        }) = actions.pop()?
        else {
            panic!("not a forward with a new value only");
        };
        assert_eq!(sink, "summaries");
        Some(serde_json::from_slice(&value).unwrap())
    }

    #[test]
    fn forwards_einstein_probe_json_alert_inside_the_cone() {
        let mut region = cone("184.0", "-6.0", "1");
        let summary = summary(
            &mut region,
            sample("json/einstein_probe_wxt-alert-01709259773.json"),
        );
        assert_eq!(
            summary,
            Some(json!({
                "mission": "einstein_probe",
                "time": "2026-04-09T11:45:11.949Z",
                "ra": 184.664,
                "dec": -6.146,
                "error": 0.05174976,
                "topic": "gcn.notices.any",
                "partition": 2,
                "offset": 77,
            }))
        );
    }

    #[test]
    fn forwards_swift_voevent_inside_the_cone() {
        let mut region = cone("225", "-69.5", "0.1");
        let summary = summary(&mut region, sample("voevent/swift_bat_grb_pos_1118357.xml"));
        assert_eq!(
            summary,
            Some(json!({
                "mission": "SWIFT",
                "time": "2022-07-30T15:48:54.89",
                "ra": 225.0208,
                "dec": -69.4969,
                "error": 0.05,
                "topic": "gcn.notices.any",
                "partition": 2,
                "offset": 77,
            }))
        );
    }

    #[test]
    fn drops_alerts_outside_the_cone() {
        // The Swift BAT burst is 0.1034 degrees from this centre.
        let mut region = cone("225", "-69.6", "0.1");
        assert_eq!(
            summary(&mut region, sample("voevent/swift_bat_grb_pos_1118357.xml")),
            None
        );
        let mut opposite = cone("4.664", "6.146", "90");
        let ep = sample("json/einstein_probe_wxt-alert-01709259773.json");
        assert_eq!(summary(&mut opposite, ep), None);
    }

    #[test]
    fn drops_alerts_without_a_position() {
        // A cone around RA 0, Dec 0, where GBM alerts put their placeholder.
        let mut region = cone("0", "0", "1");
        for name in [
            "voevent/fermi_gbm_alert_792135758.xml",
            "voevent/lvc_preliminary_MS260207a-1.xml",
            "json/igwn_gwalert-S230518h-initial.json",
            "json/fermi_gbm-trigger.alert.example.json",
            "json/swift_bat-Guano.Retraction.example.json",
            "binary/SWIFT_BAT_GRB_POS_ACK.bin",
        ] {
            assert_eq!(summary(&mut region, sample(name)), None, "{name}");
        }
        assert_eq!(summary(&mut region, b"TITLE: GCN NOTICE\n".to_vec()), None);
    }

    #[test]
    fn forwards_every_located_sample_when_the_cone_is_the_whole_sky() {
        let mut region = cone("0", "0", "180");
        let mut forwarded = Vec::new();
        for folder in ["voevent", "json", "binary"] {
            for entry in std::fs::read_dir(format!("{SAMPLES}/{folder}")).unwrap() {
                let path = entry.unwrap().path();
                if let Some(summary) = summary(&mut region, std::fs::read(&path).unwrap()) {
                    assert!(summary["mission"].is_string(), "{}", path.display());
                    assert!(summary["time"].is_string(), "{}", path.display());
                    forwarded.push(path);
                }
            }
        }
        // 16 located VOEvents (not the 3 LVK ones nor the GBM alert) and 10
        // JSON notices with `ra` and `dec`.
        assert_eq!(forwarded.len(), 26, "{forwarded:#?}");
    }

    #[test]
    fn cone_wraps_around_ra_zero() {
        let mut region = cone("359.5", "0", "1");
        let alert = json!({"ra": 0.2, "dec": 0.5, "mission": "Test"}).to_string();
        let summary = summary(&mut region, alert.into_bytes()).unwrap();
        assert_eq!(summary["mission"], "Test");
        assert_eq!(summary["error"], Value::Null);
    }

    #[test]
    fn bad_voevent_and_off_sky_position_are_bad_records() {
        let mut region = cone("0", "0", "180");
        let msg = Message::new("t", b"<voe:VOEvent ivorn='x'><What>".to_vec());
        let err = region.handle(&msg).unwrap_err();
        assert_eq!(
            err,
            HandlerError::bad_record("invalid VOEvent: line 1: document ends inside <What>")
        );
        let msg = Message::new("t", br#"{"ra": 400, "dec": 0}"#.to_vec());
        let err = region.handle(&msg).unwrap_err();
        assert_eq!(
            err,
            HandlerError::bad_record("position ra=400, dec=0 is not on the sky")
        );
    }

    #[test]
    fn init_validates_and_names_each_parameter() {
        let with = |pairs: &[(&str, &str)]| SkyRegion::init(&Params::new(pairs.iter().copied()));
        let ok = with(&[
            ("ra", "10"),
            ("dec", "-5"),
            ("radius", "2"),
            ("sink", " close "),
        ]);
        assert_eq!(ok.unwrap().sink, "close");
        for (pairs, expected) in [
            (
                &[("dec", "0"), ("radius", "1")][..],
                "missing parameter `ra`",
            ),
            (
                &[("ra", "361"), ("dec", "0"), ("radius", "1")],
                "parameter `ra` = 361 is out of range 0 to 360",
            ),
            (
                &[("ra", "1"), ("dec", "-91"), ("radius", "1")],
                "parameter `dec` = -91 is out of range -90 to 90",
            ),
            (
                &[("ra", "1"), ("dec", "0"), ("radius", "NaN")],
                "parameter `radius` = NaN is out of range",
            ),
            (
                &[("ra", "1"), ("dec", "0"), ("radius", "0")],
                "parameter `radius` must be above 0",
            ),
            (
                &[("ra", "1"), ("dec", "0"), ("radius", "x")],
                "parameter `radius` = \"x\" is not valid",
            ),
            (
                &[("ra", "1"), ("dec", "0"), ("radius", "1"), ("sink", "")],
                "parameter `sink` is empty",
            ),
            (
                &[
                    ("ra", "1"),
                    ("dec", "0"),
                    ("radius", "1"),
                    ("radius_deg", "1"),
                ],
                "unknown parameter `radius_deg`",
            ),
        ] {
            let err = with(pairs).unwrap_err();
            assert!(err.starts_with(expected), "{err} (wanted {expected})");
        }
    }

    #[test]
    fn angular_distances() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(angular_distance(0.0, 0.0, 90.0, 0.0), 90.0));
        assert!(close(angular_distance(10.0, 90.0, 200.0, 90.0), 0.0));
        assert!(close(angular_distance(0.0, 89.0, 180.0, 89.0), 2.0));
        assert!(close(angular_distance(0.0, 0.0, 180.0, 0.0), 180.0));
        assert!(close(angular_distance(359.9, 0.0, 0.1, 0.0), 0.2));
    }

    #[test]
    fn mission_names_from_schema_and_ivorn() {
        let schema =
            "https://gcn.nasa.gov/schema/main/gcn/notices/einstein_probe/wxt/alert.schema.json";
        assert_eq!(schema_mission(schema), Some("einstein_probe"));
        assert_eq!(schema_mission("https://example.org/other.json"), None);
        assert_eq!(
            ivorn_stream("ivo://nasa.gsfc.gcn/AMON#ICECUBE_GOLD_Event"),
            Some("AMON")
        );
        assert_eq!(
            ivorn_stream("ivo://gwnet/LVC#S190425z-1-Initial"),
            Some("LVC")
        );
        assert_eq!(ivorn_stream("ivo://authority#x"), None);
    }
}
