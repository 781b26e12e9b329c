//! gbm-subthreshold: save Fermi GBM sub-threshold notices whose reliability
//! is high enough; drop every other message.
//!
//! A message is saved when it is a VOEvent with `Packet_Type` 131
//! (`FERMI_GBM_SUBTHRESH`) and its `Reliability` param is at least
//! `min_reliability`. GBM rates each sub-threshold transient from 1 to 10 by
//! how likely it is to be astrophysical; most are 2 (low), some 5 (medium) or
//! 8 (high).
//!
//! Parameters:
//! - `min_reliability`: integer from 1 to 10, default 5. Anything else
//!   refuses the handler at init.
//!
//! The decision is by content, so the handler may see any topic: payloads
//! that are not VOEvents and VOEvents of other notice types are dropped.
//!
//! Errors: a payload that starts like a VOEvent but does not parse, and a
//! sub-threshold notice without a numeric `Reliability`, are bad records, left
//! to the operator's error policy (dead-letter by default) rather than
//! silently dropped.
//!
//! Caveat: test notices (`role="test"`) are treated like real ones; check
//! `VoEvent::role` as well to drop them.

use alerthost_guest::payload::{self, Format, VoEvent};
use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

/// GCN's notice type number for Fermi GBM sub-threshold notices.
const FERMI_GBM_SUBTHRESH: i32 = 131;

/// Saves reliable-enough Fermi GBM sub-threshold VOEvents.
#[derive(Debug)]
pub struct GbmSubthreshold {
    min_reliability: u8,
}

impl Handler for GbmSubthreshold {
    fn init(params: &Params) -> Result<Self, String> {
        if let Some((key, _)) = params.iter().find(|(key, _)| *key != "min_reliability") {
            return Err(format!(
                "unknown parameter `{key}`; gbm-subthreshold takes `min_reliability`"
            ));
        }
        let min_reliability = params.parse_or("min_reliability", 5_u8)?;
        if !(1..=10).contains(&min_reliability) {
            return Err(format!(
                "parameter `min_reliability` = {min_reliability} is out of range: GBM \
                 reliability runs from 1 to 10"
            ));
        }
        Ok(GbmSubthreshold { min_reliability })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if payload::detect(&msg.value) != Format::VoEvent {
            return Ok(Vec::new());
        }
        let event =
            VoEvent::parse(&msg.value).map_err(|e| HandlerError::bad_record(e.to_string()))?;
        if event.packet_type() != Some(FERMI_GBM_SUBTHRESH) {
            return Ok(Vec::new());
        }
        let reliability = event.param_f64("Reliability").map_err(|e| {
            HandlerError::bad_record(format!("sub-threshold notice {}: {e}", event.ivorn))
        })?;
        if reliability >= f64::from(self.min_reliability) {
            Ok(vec![Action::save()])
        } else {
            alerthost_guest::debug(&format!(
                "{}: reliability {reliability} is below {}, dropped",
                event.ivorn, self.min_reliability
            ));
            Ok(Vec::new())
        }
    }
}

alerthost_guest::export_handler!(GbmSubthreshold);

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/samples");
    const SUBTHRESHOLD: &str = "voevent/fermi_gbm_subthresh_546126856.xml";

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}/{name}")).unwrap()
    }

    fn handler(min_reliability: &str) -> GbmSubthreshold {
        GbmSubthreshold::init(&Params::new([("min_reliability", min_reliability)])).unwrap()
    }

    fn handle(handler: &mut GbmSubthreshold, value: Vec<u8>) -> Result<Vec<Action>, HandlerError> {
        handler.handle(&Message::new(
            "gcn.classic.voevent.FERMI_GBM_SUBTHRESH",
            value,
        ))
    }

    /// The sub-threshold sample with its `Reliability` value replaced.
    fn with_reliability(value: &str) -> Vec<u8> {
        let xml = String::from_utf8(sample(SUBTHRESHOLD)).unwrap();
        let original = r#"<Param name="Reliability"    value="2" unit="dn" />"#;
        assert!(xml.contains(original));
        xml.replace(original, value).into_bytes()
    }

    #[test]
    fn saves_notice_at_or_above_min_reliability() {
        // The sample's reliability is 2.
        assert_eq!(
            handle(&mut handler("2"), sample(SUBTHRESHOLD)),
            Ok(vec![Action::save()])
        );
        assert_eq!(
            handle(&mut handler("1"), sample(SUBTHRESHOLD)),
            Ok(vec![Action::save()])
        );
    }

    #[test]
    fn drops_notice_below_min_reliability() {
        assert_eq!(handle(&mut handler("3"), sample(SUBTHRESHOLD)), Ok(vec![]));
        let mut default = GbmSubthreshold::init(&Params::default()).unwrap();
        assert_eq!(handle(&mut default, sample(SUBTHRESHOLD)), Ok(vec![]));
        let high = with_reliability(r#"<Param name="Reliability" value="8" unit="dn" />"#);
        assert_eq!(handle(&mut default, high), Ok(vec![Action::save()]));
    }

    #[test]
    fn drops_other_voevents_json_and_binary() {
        let mut handler = handler("1");
        for folder in ["voevent", "json", "binary"] {
            for entry in std::fs::read_dir(format!("{SAMPLES}/{folder}")).unwrap() {
                let path = entry.unwrap().path();
                if path.ends_with(SUBTHRESHOLD) {
                    continue;
                }
                let value = std::fs::read(&path).unwrap();
                assert_eq!(
                    handle(&mut handler, value),
                    Ok(vec![]),
                    "{}",
                    path.display()
                );
            }
        }
        // The classic binary sub-threshold packet is not a VOEvent either.
        assert_eq!(
            handle(&mut handler, sample("binary/FERMI_GBM_SUBTHRESH.bin")),
            Ok(vec![])
        );
    }

    #[test]
    fn truncated_voevent_is_a_bad_record() {
        let mut truncated = sample(SUBTHRESHOLD);
        truncated.truncate(1500);
        let Err(HandlerError::BadRecord(text)) = handle(&mut handler("1"), truncated) else {
            panic!("not a bad record");
        };
        assert!(text.starts_with("invalid VOEvent: line "), "{text}");
    }

    #[test]
    fn notice_without_numeric_reliability_is_a_bad_record() {
        let mut handler = handler("1");
        for (replacement, detail) in [
            ("", "no Param named `Reliability`"),
            (
                r#"<Param name="Reliability" value="high" />"#,
                r#"Param `Reliability` = "high" is not a number"#,
            ),
        ] {
            let Err(HandlerError::BadRecord(text)) =
                handle(&mut handler, with_reliability(replacement))
            else {
                panic!("not a bad record: {replacement}");
            };
            assert!(
                text.starts_with("sub-threshold notice ivo://nasa.gsfc.gcn/Fermi#GBM_SubThresh_"),
                "{text}"
            );
            assert!(text.ends_with(detail), "{text}");
        }
    }

    #[test]
    fn init_names_the_invalid_parameter() {
        for (key, value, expected) in [
            (
                "min_reliability",
                "abc",
                "parameter `min_reliability` = \"abc\" is not valid",
            ),
            (
                "min_reliability",
                "11",
                "parameter `min_reliability` = 11 is out of range",
            ),
            (
                "min_reliability",
                "0",
                "parameter `min_reliability` = 0 is out of range",
            ),
            ("min_reliablity", "5", "unknown parameter `min_reliablity`"),
        ] {
            let err = GbmSubthreshold::init(&Params::new([(key, value)])).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
