//! first-notice: pass the first notice of each GCN event, and any later
//! notice of it whose error radius is smaller than that of every earlier
//! one; retractions always pass. Everything else is dropped.
//!
//! GCN sends several notices per event (a Fermi GBM trigger comes as Alert,
//! Flight, Ground and Final position; Swift, IceCube, LVK and others send
//! updates and retractions), often on several topics and in several formats.
//! The handler remembers, per event, the smallest error radius passed so far
//! in the host's per-handler state (`alerthost_guest::state`), so it keeps
//! deciding correctly across restarts and new versions.
//!
//! Event key: `MISSION/ID`, so IDs from different missions never clash.
//! - VOEvent and classic binary: the mission from GCN's notice type
//!   (`Packet_Type`, word 0 of a packet; see [`mission_of_packet`]); the ID
//!   from `TrigID` (VOEvent) or the trigger number (word 4; Swift's low 24
//!   bits), except LVK (`GraceID`), IceCube (`run_id` and `event_id`, as
//!   `RUN_EVENT`; words 23 and 4 of a packet) and GBM sub-threshold
//!   (`Trans_Num`). A trigger number of 0 or less (test packets) is no ID.
//! - Unified JSON: the mission from the folders of `$schema` after
//!   `notices/` joined with `-` (`fermi-gbm`, `swift-bat`, `icecube`,
//!   `einstein_probe-wxt`); the ID from `id.0`, else `ref_ID` (strings). IGWN alerts
//!   (`superevent_id`) are `lvk/SUPEREVENT`.
//! - Classic text: the mission from `TITLE` (`GCN/SWIFT NOTICE` is `swift`;
//!   for Fermi `NOTICE_TYPE` picks `fermi-gbm`, `fermi-lat` or
//!   `fermi-gbm-subthreshold`; `LVC` is `lvk`); the ID is the first word of
//!   `TRIGGER_NUM`.
//!
//! Error radius, in degrees: VOEvent `Error2Radius`; JSON `ra_dec_error`;
//! packet word 11 (in 1/10000 degree) for the position notice types in
//! [`POSITION_PACKETS`]; text `GRB_ERROR` in `deg`, `arcmin` or `arcsec`. A
//! radius of 0 (GCN's "none given") is no radius. A later notice without a
//! radius, or with one no smaller than the best so far, is a repeat.
//!
//! Retraction: notice type 164 (LVK), a `Retraction` param of `true`, an
//! `AlertType` of `Retraction`, a JSON `alert_type` of `retraction` (any
//! case), a text `NOTICE_TYPE` containing `Retraction`.
//!
//! Parameters:
//! - `sink`: forward passing notices to this sink (declared for the handler
//!   in the host configuration) instead of saving them.
//! - `ttl_days`: how long an event is remembered after its last passing
//!   notice, by message time, 1 to 3650, default 30 (GCN keeps about a
//!   month of notices).
//!
//! Each decision is logged at debug level as `first-notice: DECISION KEY`.
//!
//! Caveats: the same event in two formats has one key only where the formats
//! carry the same ID (GBM, Swift, INTEGRAL and IceCube do; LVK packets carry
//! a number instead of the GraceID). A notice with no event ID (heartbeats,
//! circulars, test packets) is dropped.

use std::time::Duration;

use alerthost_guest::payload::{self, ClassicBinary, Format, Json, VoEvent};
use alerthost_guest::{Action, Handler, HandlerError, Message, Params, debug, state};

const PARAMS: [&str; 2] = ["sink", "ttl_days"];

/// GCN notice types whose packet word 11 is the error radius in 1/10000
/// degree: INTEGRAL Wakeup/Refined/Offline/Weak, Swift BAT position, XRT,
/// UVOT and BAT quick-look, Fermi GBM Flight/Ground/Final position and
/// sub-threshold, IceCube Gold/Bronze/Cascade.
pub const POSITION_PACKETS: [i32; 15] = [
    53, 54, 55, 56, 61, 67, 81, 97, 111, 112, 115, 131, 173, 174, 176,
];

/// Passes first notices and better localisations.
#[derive(Debug)]
pub struct FirstNotice {
    sink: Option<String>,
    ttl: Duration,
}

/// What a notice says about its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `MISSION/ID`.
    pub key: String,
    /// Error radius in degrees, when the notice gives one.
    pub error_radius: Option<f64>,
    /// Whether the notice retracts the event.
    pub retraction: bool,
}

/// What the handler decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The first notice of its event: passed.
    First,
    /// A smaller error radius than every earlier notice: passed.
    Smaller,
    /// A retraction: passed.
    Retraction,
    /// No better than what was passed: dropped.
    Repeat,
    /// Not a notice of an event this handler can identify: dropped.
    NoEvent,
}

impl Decision {
    /// The name used in logs and in the expected-decisions file.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::First => "first",
            Decision::Smaller => "smaller",
            Decision::Retraction => "retraction",
            Decision::Repeat => "repeat",
            Decision::NoEvent => "no-event",
        }
    }

    /// Whether the message is saved or forwarded.
    pub fn passes(self) -> bool {
        matches!(
            self,
            Decision::First | Decision::Smaller | Decision::Retraction
        )
    }
}

impl Handler for FirstNotice {
    fn init(params: &Params) -> Result<Self, String> {
        if let Some((key, _)) = params.iter().find(|(key, _)| !PARAMS.contains(key)) {
            return Err(format!(
                "unknown parameter `{key}`; first-notice takes `sink` and `ttl_days`"
            ));
        }
        let days: u64 = params.parse_or("ttl_days", 30)?;
        if !(1..=3650).contains(&days) {
            return Err(format!(
                "parameter `ttl_days` = {days} is out of range: 1 to 3650"
            ));
        }
        let sink = match params.get("sink").map(str::trim) {
            Some("") => return Err("parameter `sink` is empty".into()),
            sink => sink.map(str::to_owned),
        };
        Ok(FirstNotice {
            sink,
            ttl: Duration::from_secs(days * 86_400),
        })
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        let (decision, key) = self.decide(&msg.value);
        debug(&format!(
            "first-notice: {} {}",
            decision.as_str(),
            key.as_deref().unwrap_or("-")
        ));
        Ok(match (decision.passes(), &self.sink) {
            (false, _) => vec![],
            (true, Some(sink)) => vec![Action::forward(sink.clone())],
            (true, None) => vec![Action::save()],
        })
    }
}

impl FirstNotice {
    /// Decide on one payload and record the decision in the state: the
    /// decision and the event key.
    pub fn decide(&self, bytes: &[u8]) -> (Decision, Option<String>) {
        let Some(notice) = notice(bytes) else {
            return (Decision::NoEvent, None);
        };
        // Stored: the smallest radius passed so far, as decimal text; empty
        // when no passed notice had one.
        let best: Option<Option<f64>> = state::get(&notice.key)
            .map(|stored| String::from_utf8_lossy(&stored).trim().parse::<f64>().ok());
        let decision = match (best, notice.error_radius) {
            _ if notice.retraction => Decision::Retraction,
            (None, _) => Decision::First,
            (Some(None), Some(_)) => Decision::Smaller,
            (Some(Some(best)), Some(radius)) if radius < best => Decision::Smaller,
            _ => Decision::Repeat,
        };
        let record = match decision {
            Decision::First | Decision::Smaller => notice.error_radius,
            // A retraction of an unseen event makes it seen; of a seen one,
            // it leaves the record alone.
            Decision::Retraction if best.is_none() => None,
            _ => return (decision, Some(notice.key)),
        };
        let text = record.map_or(String::new(), |r| r.to_string());
        state::set_with_ttl(&notice.key, text.as_bytes(), self.ttl);
        (decision, Some(notice.key))
    }
}

/// The event key, error radius and retraction flag of a notice in any of
/// GCN's formats; `None` when it names no event this handler knows.
pub fn notice(bytes: &[u8]) -> Option<Notice> {
    match payload::detect(bytes) {
        Format::VoEvent => voevent_notice(&VoEvent::parse(bytes).ok()?),
        Format::Json => json_notice(&Json::parse(bytes).ok()?),
        Format::ClassicBinary => binary_notice(&ClassicBinary::parse(bytes).ok()?),
        Format::ClassicText => text_notice(&payload::classic_text_pairs(bytes)),
        Format::Unknown => None,
    }
}

/// The mission of a GCN notice type (VOEvent `Packet_Type`, packet word 0);
/// other types get a mission of their own, `gcn-TYPE`.
pub fn mission_of_packet(packet_type: i32) -> String {
    match packet_type {
        52..=56 => "integral",
        60..=99 => "swift",
        110..=119 => "fermi-gbm",
        120..=129 => "fermi-lat",
        131 => "fermi-gbm-subthreshold",
        150..=154 | 163 | 164 => "lvk",
        157..=160 => "amon",
        173 | 174 | 176 => "icecube",
        other => return format!("gcn-{other}"),
    }
    .to_owned()
}

fn key(mission: &str, id: &str) -> Option<String> {
    let id = id.trim();
    (!id.is_empty()).then(|| format!("{mission}/{id}"))
}

fn positive(radius: Option<f64>) -> Option<f64> {
    radius.filter(|r| *r > 0.0)
}

fn voevent_notice(event: &VoEvent) -> Option<Notice> {
    let packet_type = event.packet_type()?;
    let mission = mission_of_packet(packet_type);
    let id = match mission.as_str() {
        "lvk" => event.param("GraceID")?.trim().to_owned(),
        "icecube" => format!(
            "{}_{}",
            event.param("run_id")?.trim(),
            event.param("event_id")?.trim()
        ),
        "fermi-gbm-subthreshold" => event.param("Trans_Num")?.trim().to_owned(),
        _ => event.param("TrigID")?.trim().to_owned(),
    };
    let flag = |name: &str, value: &str| {
        event
            .param(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    Some(Notice {
        key: key(&mission, &id)?,
        error_radius: positive(event.position.and_then(|p| p.error_radius)),
        retraction: packet_type == 164
            || flag("Retraction", "true")
            || flag("AlertType", "Retraction"),
    })
}

fn json_notice(doc: &Json) -> Option<Notice> {
    let retraction = doc
        .str("alert_type")
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("retraction"));
    if let Some(superevent) = doc.str("superevent_id") {
        return Some(Notice {
            key: key("lvk", superevent)?,
            error_radius: None,
            retraction,
        });
    }
    let schema = doc.str("$schema")?;
    let (_, path) = schema.split_once("/notices/")?;
    let (folders, _file) = path.rsplit_once('/')?;
    let mission = folders.replace('/', "-");
    let id = doc.str("id.0").or_else(|| doc.str("ref_ID"))?;
    Some(Notice {
        key: key(&mission, id)?,
        error_radius: positive(doc.f64("ra_dec_error")),
        retraction,
    })
}

fn binary_notice(packet: &ClassicBinary) -> Option<Notice> {
    let packet_type = packet.packet_type();
    let mission = mission_of_packet(packet_type);
    let trigger = match mission.as_str() {
        // The top 8 bits are the observation segment.
        "swift" => packet.trigger_number() & 0x00FF_FFFF,
        _ => packet.trigger_number(),
    };
    if trigger <= 0 {
        return None;
    }
    let id = match mission.as_str() {
        "icecube" => format!("{}_{trigger}", packet.word(23)?),
        _ => trigger.to_string(),
    };
    let error_radius = POSITION_PACKETS
        .contains(&packet_type)
        .then(|| f64::from(packet.words[11]) / 10_000.0);
    Some(Notice {
        key: key(&mission, &id)?,
        error_radius: positive(error_radius),
        retraction: packet_type == 164,
    })
}

fn text_notice(pairs: &[(String, String)]) -> Option<Notice> {
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let title = value("TITLE")?;
    let notice_type = value("NOTICE_TYPE")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let source = title.strip_prefix("GCN/")?.strip_suffix(" NOTICE")?.trim();
    let mission = match source.to_ascii_lowercase().as_str() {
        "fermi" if notice_type.contains("sub-threshold") => "fermi-gbm-subthreshold".to_owned(),
        "fermi" if notice_type.contains("lat") => "fermi-lat".to_owned(),
        "fermi" => "fermi-gbm".to_owned(),
        "lvc" => "lvk".to_owned(),
        other => other.to_owned(),
    };
    let id = value("TRIGGER_NUM")?
        .split([' ', ','])
        .next()
        .unwrap_or_default();
    Some(Notice {
        key: key(&mission, id)?,
        error_radius: positive(value("GRB_ERROR").and_then(text_radius)),
        retraction: notice_type.contains("retraction"),
    })
}

/// A classic text `GRB_ERROR` such as `7.60 [deg radius, statistical only]`
/// or `3.00 [arcmin radius, stat+sys, 90% containment]`, in degrees.
fn text_radius(text: &str) -> Option<f64> {
    let mut words = text.split_ascii_whitespace();
    let number = payload_number(words.next()?.trim())?;
    let unit = words.next()?.trim_start_matches('[');
    let unit = unit.split([',', ']']).next().unwrap_or_default();
    match unit {
        "deg" => Some(number),
        "arcmin" => Some(number / 60.0),
        "arcsec" => Some(number / 3600.0),
        _ => None,
    }
}

fn payload_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

alerthost_guest::export_handler!(FirstNotice);

#[cfg(test)]
mod tests;
