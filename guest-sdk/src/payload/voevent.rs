//! IVOA VOEvent 2.0 documents, as GCN sends them: identity, `Who/Date`,
//! every `Param`, and the `WhereWhen` time and sky position.

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

use super::{Format, PayloadError, iso_time_to_unix_millis};

/// The `role` of a VOEvent: whether it reports a real observation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A real observation (the default when `role` is absent).
    Observation,
    /// A prediction of an event.
    Prediction,
    /// Information about the stream itself, not about the sky.
    Utility,
    /// A test message; not a real event.
    Test,
    /// Any other value, as written.
    Other(String),
}

impl Role {
    fn from_attribute(value: &str) -> Self {
        match value {
            "observation" => Role::Observation,
            "prediction" => Role::Prediction,
            "utility" => Role::Utility,
            "test" => Role::Test,
            other => Role::Other(other.to_owned()),
        }
    }
}

/// One `<Param>` of the `<What>` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The `name` attribute; empty when absent.
    pub name: String,
    /// The `value` attribute, or the text of a `<Value>` child when the
    /// attribute is absent; empty when neither is given.
    pub value: String,
    /// The `unit` attribute, such as `deg` or `sec`.
    pub unit: Option<String>,
    /// The `ucd` attribute (IVOA unified content descriptor).
    pub ucd: Option<String>,
    /// The `name` of the innermost `<Group>` holding the param; `None` for a
    /// param directly under `<What>`.
    pub group: Option<String>,
}

/// A sky position from `WhereWhen`, in equatorial coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Right ascension in degrees (`Value2/C1`).
    pub ra: f64,
    /// Declination in degrees (`Value2/C2`).
    pub dec: f64,
    /// Error circle radius in degrees (`Error2Radius`), when given. GCN
    /// writes `0` when the instrument gives none.
    pub error_radius: Option<f64>,
}

/// A parsed VOEvent document.
///
/// Only what handlers commonly filter on is kept; keep the message bytes to
/// save or forward the whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct VoEvent {
    /// The event's identifier, the root's `ivorn` attribute, such as
    /// `ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1118357-182`.
    pub ivorn: String,
    /// The root's `role` attribute.
    pub role: Role,
    /// The root's `version` attribute, such as `2.0`.
    pub version: Option<String>,
    /// `Who/Date`: when the author wrote the event, as written.
    pub date: Option<String>,
    /// Every `<Param>` under `<What>`, including those in `<Group>`s, in
    /// document order.
    pub params: Vec<Param>,
    /// The first `WhereWhen` `ISOTime`: when the event happened, as written
    /// (UTC for GCN).
    pub iso_time: Option<String>,
    /// The first `WhereWhen` `Position2D`, when it is given in degrees and in
    /// an FK5 or ICRS (equatorial) coordinate system, or with no system named.
    pub position: Option<Position>,
}

impl VoEvent {
    /// Parse a VOEvent document. The root element must be `VOEvent` (any
    /// namespace prefix) with an `ivorn`; the XML must be well formed UTF-8.
    /// The error names the line and what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<VoEvent, PayloadError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            PayloadError::new(
                Format::VoEvent,
                format!("not UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        if let Some((at, c)) = text.char_indices().find(|&(_, c)| !is_xml_char(c)) {
            return Err(fail(
                text,
                at,
                format!("character U+{:04X} is not allowed in XML", u32::from(c)),
            ));
        }
        Parser::default().run(text)
    }

    /// The value of the first param named `name`, in a group or not.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The value of the param `name` inside the group named `group`.
    pub fn group_param(&self, group: &str, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name && p.group.as_deref() == Some(group))
            .map(|p| p.value.as_str())
    }

    /// The first param named `name` as a finite number; the error says
    /// whether it is missing or not a number.
    pub fn param_f64(&self, name: &str) -> Result<f64, PayloadError> {
        let value = self.param(name).ok_or_else(|| {
            PayloadError::new(Format::VoEvent, format!("no Param named `{name}`"))
        })?;
        parse_finite(value).ok_or_else(|| {
            PayloadError::new(
                Format::VoEvent,
                format!("Param `{name}` = {value:?} is not a number"),
            )
        })
    }

    /// GCN's notice type number, the `Packet_Type` param (for example 131 for
    /// a Fermi GBM sub-threshold notice, 61 for a Swift BAT GRB position).
    pub fn packet_type(&self) -> Option<i32> {
        self.param("Packet_Type")?.trim().parse().ok()
    }

    /// [`VoEvent::iso_time`] in milliseconds since the Unix epoch; see
    /// [`iso_time_to_unix_millis`].
    pub fn time_unix_millis(&self) -> Option<i64> {
        iso_time_to_unix_millis(self.iso_time.as_deref()?)
    }
}

fn parse_finite(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// State of one pass over the document.
#[derive(Default)]
struct Parser {
    /// Local names of the open elements, root first.
    path: Vec<String>,
    /// `name` of each open `<Group>`, innermost last.
    groups: Vec<Option<String>>,
    /// Text of the element being read; reset at each tag.
    text: String,
    /// A `<Param>` whose end tag has not been read yet.
    open_param: Option<Param>,
    /// `unit` and `coord_system_id` seen while inside `<Position2D>`.
    position_unit: Option<String>,
    coord_system: Option<String>,
    c1: Option<f64>,
    c2: Option<f64>,
    error_radius: Option<f64>,
    root_closed: bool,
    event: Option<VoEvent>,
    /// How many of the open elements are `<What>` and `<WhereWhen>`: asking
    /// whether one is open must not walk the path (deep documents would take
    /// quadratic time).
    open_what: usize,
    open_where_when: usize,
}

impl Parser {
    fn run(mut self, text: &str) -> Result<VoEvent, PayloadError> {
        let mut reader = Reader::from_str(text);
        loop {
            let event = reader.read_event().map_err(|e| {
                let at = usize::try_from(reader.error_position()).unwrap_or(text.len());
                fail(text, at, format!("malformed XML: {e}"))
            })?;
            let at = usize::try_from(reader.buffer_position()).unwrap_or(text.len());
            let result = match event {
                Event::Start(start) => self.open(&start),
                Event::Empty(start) => self.open(&start).and_then(|()| self.close()),
                Event::End(_) => self.close(),
                Event::Text(t) => self.add_text(&t.xml10_content()),
                Event::CData(t) => self.add_text(&t.xml10_content()),
                Event::GeneralRef(r) => match r.resolve_char_ref() {
                    Ok(Some(c)) if is_xml_char(c) => self.add_text(c.encode_utf8(&mut [0; 4])),
                    Ok(Some(c)) => Err(format!(
                        "character reference to U+{:04X}, which XML does not allow",
                        u32::from(c)
                    )),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => self.add_text(s),
                        None => Err(format!("unknown entity `&{};`", &*r)),
                    },
                    Err(e) => Err(format!("bad character reference: {e}")),
                },
                Event::Eof => break,
                // Entities declared in an internal subset are not expanded
                // here, nor by the other SDKs: refuse such a doctype alike.
                Event::DocType(doctype) if doctype.contains('[') => {
                    Err("a doctype with an internal subset is not supported".into())
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => Ok(()),
            };
            result.map_err(|detail| fail(text, at, detail))?;
        }
        if let Some(open) = self.path.last() {
            return Err(fail(
                text,
                text.len(),
                format!("document ends inside <{open}>"),
            ));
        }
        self.event
            .ok_or_else(|| PayloadError::new(Format::VoEvent, "no root element"))
    }

    fn open(&mut self, start: &BytesStart) -> Result<(), String> {
        let name = start.local_name().into_inner().to_owned();
        self.text.clear();
        // Every attribute of every element must be well formed, as for any
        // XML parser, not only the ones read here.
        let all = all_attributes(start)?;
        if self.root_closed {
            return Err(format!("<{name}> after the end of the root element"));
        }
        if self.path.is_empty() {
            if name != "VOEvent" {
                return Err(format!("root element is <{name}>, not <VOEvent>"));
            }
            let [ivorn, role, version] = named(&all, ["ivorn", "role", "version"]);
            self.event = Some(VoEvent {
                ivorn: ivorn.ok_or("<VOEvent> has no ivorn attribute")?,
                role: role.map_or(Role::Observation, |r| Role::from_attribute(&r)),
                version,
                date: None,
                params: Vec::new(),
                iso_time: None,
                position: None,
            });
        }
        match name.as_str() {
            "Group" => {
                let [group] = named(&all, ["name"]);
                self.groups.push(group);
            }
            "Param" if self.within("What") => {
                let [name, value, unit, ucd] = named(&all, ["name", "value", "unit", "ucd"]);
                self.open_param = Some(Param {
                    name: name.unwrap_or_default(),
                    value: value.unwrap_or_default(),
                    unit,
                    ucd,
                    group: self.groups.last().cloned().flatten(),
                });
            }
            "AstroCoords" if self.within("WhereWhen") => {
                let [system] = named(&all, ["coord_system_id"]);
                self.coord_system = system;
            }
            "Position2D" if self.within("WhereWhen") => {
                let [unit] = named(&all, ["unit"]);
                self.position_unit = unit;
                (self.c1, self.c2, self.error_radius) = (None, None, None);
            }
            _ => {}
        }
        match name.as_str() {
            "What" => self.open_what += 1,
            "WhereWhen" => self.open_where_when += 1,
            _ => {}
        }
        self.path.push(name);
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        // quick-xml has already checked that the end tag matches.
        let name = self.path.pop().ok_or("end tag without a start tag")?;
        match name.as_str() {
            "What" => self.open_what -= 1,
            "WhereWhen" => self.open_where_when -= 1,
            _ => {}
        }
        let text = std::mem::take(&mut self.text);
        let in_where_when = self.within("WhereWhen");
        let Some(event) = self.event.as_mut() else {
            return Ok(());
        };
        let parent = self.path.last().map(String::as_str);
        match (parent, name.as_str()) {
            (None, _) => self.root_closed = true,
            (_, "Group") => {
                self.groups.pop();
            }
            (_, "Param") => {
                if let Some(param) = self.open_param.take() {
                    event.params.push(param);
                }
            }
            (Some("Param"), "Value") => {
                if let Some(param) = self.open_param.as_mut().filter(|p| p.value.is_empty()) {
                    param.value = text.trim().to_owned();
                }
            }
            (Some("Who"), "Date") if self.path.len() == 2 && event.date.is_none() => {
                event.date = Some(text.trim().to_owned());
            }
            (_, "ISOTime") if in_where_when && event.iso_time.is_none() => {
                event.iso_time = Some(text.trim().to_owned());
            }
            (Some("Value2"), "C1" | "C2") | (Some("Position2D"), "Error2Radius")
                if in_where_when =>
            {
                let value = parse_finite(&text)
                    .ok_or_else(|| format!("<{name}> {:?} is not a number", text.trim()))?;
                match name.as_str() {
                    "C1" => self.c1 = Some(value),
                    "C2" => self.c2 = Some(value),
                    _ => self.error_radius = Some(value),
                }
            }
            (_, "Position2D") if in_where_when && event.position.is_none() => {
                let in_degrees = self.position_unit.as_deref().is_none_or(|u| u == "deg");
                let equatorial = self
                    .coord_system
                    .as_deref()
                    .is_none_or(|s| s.contains("FK5") || s.contains("ICRS"));
                if let (Some(ra), Some(dec), true, true) =
                    (self.c1, self.c2, in_degrees, equatorial)
                {
                    event.position = Some(Position {
                        ra,
                        dec,
                        error_radius: self.error_radius,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn add_text(&mut self, text: &str) -> Result<(), String> {
        if self.root_closed && !text.trim().is_empty() {
            return Err("text after the end of the root element".into());
        }
        self.text.push_str(text);
        Ok(())
    }

    fn within(&self, element: &str) -> bool {
        match element {
            "What" => self.open_what > 0,
            "WhereWhen" => self.open_where_when > 0,
            _ => unreachable!("only <What> and <WhereWhen> are counted"),
        }
    }
}

/// Every attribute of `start` as (name, value), values normalized; an error
/// for a malformed or repeated attribute or an unknown entity in a value.
fn all_attributes(start: &BytesStart) -> Result<Vec<(String, String)>, String> {
    start
        .attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|e| format!("bad attribute: {e}"))?;
            let name = attribute.key.as_ref().to_owned();
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad value of attribute `{name}`: {e}"))?;
            // The document has no such character: a reference made it.
            if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
                return Err(format!(
                    "bad value of attribute `{name}`: character reference to U+{:04X}, \
                     which XML does not allow",
                    u32::from(c)
                ));
            }
            Ok((name, value.into_owned()))
        })
        .collect()
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The values of the named (unprefixed) attributes, in order.
fn named<const N: usize>(attributes: &[(String, String)], names: [&str; N]) -> [Option<String>; N] {
    names.map(|wanted| {
        attributes
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.clone())
    })
}

/// An error at byte `at` of `text`, located by line number.
fn fail(text: &str, at: usize, detail: String) -> PayloadError {
    let line = text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    PayloadError::new(Format::VoEvent, format!("line {line}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::tests::{sample, samples_in};

    #[test]
    fn reads_gbm_subthreshold_params_groups_and_position() {
        let event = VoEvent::parse(&sample("voevent/fermi_gbm_subthresh_546126856.xml")).unwrap();
        assert_eq!(
            event.ivorn,
            "ivo://nasa.gsfc.gcn/Fermi#GBM_SubThresh_2018-04-22T21:54:11.00_546126856_0-001"
        );
        assert_eq!(event.role, Role::Test);
        assert_eq!(event.version.as_deref(), Some("2.0"));
        assert_eq!(event.date.as_deref(), Some("2018-04-23T00:30:42"));
        assert_eq!(event.packet_type(), Some(131));
        assert_eq!(event.param("Reliability"), Some("2"));
        assert_eq!(event.param_f64("Reliability"), Ok(2.0));
        let reliability = event.params.iter().find(|p| p.name == "Reliability");
        assert_eq!(reliability.unwrap().unit.as_deref(), Some("dn"));
        assert_eq!(event.param_f64("Trans_Duration"), Ok(1.407));
        // `Trigger_ID` is both a top-level param and a group name.
        assert_eq!(event.param("Trigger_ID"), Some("0x0"));
        assert_eq!(
            event.group_param("Trigger_ID", "Test_Submission"),
            Some("false")
        );
        let sun_ra = event.params.iter().find(|p| p.name == "Sun_RA").unwrap();
        assert_eq!(sun_ra.group.as_deref(), Some("Obs_Support_Info"));
        assert_eq!(sun_ra.ucd.as_deref(), Some("pos.eq.ra"));
        assert_eq!(event.params.len(), 34);
        assert_eq!(event.iso_time.as_deref(), Some("2018-04-22T21:54:11.05"));
        assert_eq!(event.time_unix_millis(), Some(1_524_434_051_050));
        assert_eq!(
            event.position,
            Some(Position {
                ra: 262.97,
                dec: 19.7399,
                error_radius: Some(22.1299)
            })
        );
    }

    #[test]
    fn reads_swift_bat_position() {
        let event = VoEvent::parse(&sample("voevent/swift_bat_grb_pos_1118357.xml")).unwrap();
        assert_eq!(event.role, Role::Observation);
        assert_eq!(event.packet_type(), Some(61));
        assert_eq!(event.param("TrigID"), Some("1118357"));
        assert_eq!(
            event.position,
            Some(Position {
                ra: 225.0208,
                dec: -69.4969,
                error_radius: Some(0.05)
            })
        );
        assert_eq!(event.iso_time.as_deref(), Some("2022-07-30T15:48:54.89"));
    }

    #[test]
    fn reads_lvk_notice_without_position() {
        let event = VoEvent::parse(&sample("voevent/lvc_preliminary_MS260207a-1.xml")).unwrap();
        assert_eq!(event.role, Role::Test);
        assert_eq!(event.packet_type(), Some(150));
        assert_eq!(event.param("GraceID"), Some("MS260207a"));
        assert_eq!(
            event.group_param("Classification", "BNS").map(str::len),
            Some(18)
        );
        assert_eq!(event.param_f64("FAR"), Ok(5.176954877338635e-16));
        assert_eq!(event.date.as_deref(), Some("2026-02-07T00:57:16Z"));
        assert_eq!(event.time_unix_millis(), Some(1_770_425_747_933));
        assert_eq!(event.position, None);
    }

    #[test]
    fn parses_every_sample_with_ivorn_time_and_packet_type() {
        for (name, bytes) in samples_in("voevent") {
            let event = VoEvent::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(event.ivorn.starts_with("ivo://"), "{name}");
            assert!(event.time_unix_millis().is_some(), "{name}");
            assert!(event.packet_type().is_some(), "{name}");
            assert_eq!(event.position.is_none(), name.starts_with("lvc_"), "{name}");
        }
    }

    #[test]
    fn reads_value_children_entities_and_plain_root() {
        let xml = br#"<VOEvent ivorn="ivo://x/y#1&amp;2">
          <What>
            <Param name="a"><Value>1.5</Value></Param>
            <Param name="b" value="x &lt; y"/>
            <Param name="c" value="&#x41;"/>
          </What>
          <WhereWhen><ObsDataLocation><ObservationLocation>
            <AstroCoords coord_system_id="UTC-GAL-GEO">
              <Position2D unit="deg"><Value2><C1>1</C1><C2>2</C2></Value2></Position2D>
            </AstroCoords>
          </ObservationLocation></ObsDataLocation></WhereWhen>
        </VOEvent>"#;
        let event = VoEvent::parse(xml).unwrap();
        assert_eq!(event.ivorn, "ivo://x/y#1&2");
        assert_eq!(event.role, Role::Observation);
        assert_eq!(event.param_f64("a"), Ok(1.5));
        assert_eq!(event.param("b"), Some("x < y"));
        assert_eq!(event.param("c"), Some("A"));
        // Galactic coordinates are not an RA/Dec position.
        assert_eq!(event.position, None);
    }

    #[test]
    fn param_errors_say_missing_or_not_a_number() {
        let event = VoEvent::parse(
            br#"<VOEvent ivorn="i"><What><Param name="x" value="high"/></What></VOEvent>"#,
        )
        .unwrap();
        assert_eq!(
            event.param_f64("y").unwrap_err().to_string(),
            "invalid VOEvent: no Param named `y`"
        );
        assert_eq!(
            event.param_f64("x").unwrap_err().to_string(),
            r#"invalid VOEvent: Param `x` = "high" is not a number"#
        );
    }

    #[test]
    fn malformed_documents_fail_with_line_and_reason() {
        let subthreshold = sample("voevent/fermi_gbm_subthresh_546126856.xml");
        let cut = subthreshold
            .windows(11)
            .position(|w| w == b"<WhereWhen>")
            .unwrap();
        let cases: [(&[u8], &str); 9] = [
            (&subthreshold[..cut], "document ends inside <VOEvent>"),
            (&subthreshold[..cut + 3], "tag not closed"),
            (
                b"<VOEvent ivorn='i'>\n<What>\n</Who>\n</VOEvent>",
                "line 3: malformed XML",
            ),
            (b"<html/>", "root element is <html>, not <VOEvent>"),
            (
                b"<VOEvent role='test'/>",
                "<VOEvent> has no ivorn attribute",
            ),
            (
                b"<VOEvent ivorn='i'/><VOEvent ivorn='j'/>",
                "after the end of the root",
            ),
            (
                b"<VOEvent ivorn='i'>&nbsp;</VOEvent>",
                "unknown entity `&nbsp;`",
            ),
            (b"<VOEvent ivorn='i'>\xff</VOEvent>", "not UTF-8 at byte 19"),
            (b"  ", "no root element"),
        ];
        for (bytes, expected) in cases {
            let err = VoEvent::parse(bytes).unwrap_err();
            assert_eq!(err.format(), Format::VoEvent);
            assert!(
                err.detail().contains(expected),
                "{err} (wanted {expected:?})"
            );
        }
    }

    #[test]
    fn bad_coordinates_are_errors() {
        let xml = br#"<VOEvent ivorn="i"><WhereWhen><Position2D unit="deg">
            <Value2><C1>abc</C1><C2>1</C2></Value2></Position2D></WhereWhen></VOEvent>"#;
        let err = VoEvent::parse(xml).unwrap_err();
        assert_eq!(err.detail(), r#"line 2: <C1> "abc" is not a number"#);
    }
}
