//! Payload helpers: format detection and field access for the formats GCN
//! alerts come in.
//!
//! A handler may receive messages from any topic, so it should decide by
//! content: [`detect`] looks at the bytes, then [`VoEvent`], [`Json`],
//! [`classic_text_pairs`] or [`ClassicBinary`] read them. Everything here is
//! plain Rust and works the same natively and inside a component.
//!
//! ```
//! use alerthost_guest::payload::{self, Format, VoEvent};
//!
//! let xml = br#"<voe:VOEvent ivorn="ivo://example/x#1" role="test"
//!     xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0">
//!   <What><Param name="Reliability" value="5"/></What>
//! </voe:VOEvent>"#;
//! assert_eq!(payload::detect(xml), Format::VoEvent);
//! let event = VoEvent::parse(xml).unwrap();
//! assert_eq!(event.param_f64("Reliability"), Ok(5.0));
//! ```

mod classic;
mod json;
mod voevent;

use std::fmt;

pub use classic::{ClassicBinary, classic_text_pairs};
pub use json::Json;
pub use voevent::{Param, Position, Role, VoEvent};

/// The format of a message payload, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// An IVOA VOEvent XML document (`<VOEvent>` or `<voe:VOEvent>` root).
    VoEvent,
    /// A JSON document, such as a GCN unified-schema notice or an IGWN alert.
    Json,
    /// A GCN classic text notice: lines of `KEY:  value`.
    ClassicText,
    /// A GCN classic binary packet: 160 bytes, 40 big-endian 32-bit words.
    ClassicBinary,
    /// None of the above, including XML with another root element.
    Unknown,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::VoEvent => "VOEvent",
            Format::Json => "JSON",
            Format::ClassicText => "classic text notice",
            Format::ClassicBinary => "classic binary packet",
            Format::Unknown => "unknown payload",
        })
    }
}

/// Why a payload could not be read as the format asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    format: Format,
    detail: String,
}

impl PayloadError {
    pub(crate) fn new(format: Format, detail: impl Into<String>) -> Self {
        PayloadError {
            format,
            detail: detail.into(),
        }
    }

    /// The format the payload was read as.
    pub fn format(&self) -> Format {
        self.format
    }

    /// What is wrong, without the format name.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.format, self.detail)
    }
}

impl std::error::Error for PayloadError {}

/// Size of a GCN classic binary packet, in bytes.
pub const CLASSIC_PACKET_LEN: usize = 160;

/// Guess the format of `bytes` from their content alone (never from a topic
/// name).
///
/// - [`Format::VoEvent`]: after an optional UTF-8 byte-order mark, whitespace,
///   XML declaration, comments and doctype, the root element is `VOEvent`
///   with any namespace prefix. The rest of the document is not checked;
///   [`VoEvent::parse`] does that.
/// - [`Format::Json`]: the first non-space byte is `{` or `[` and the whole
///   payload parses as JSON.
/// - [`Format::ClassicText`]: printable text whose first non-blank line is
///   `KEY: value` with an upper-case key, such as `TITLE:  GCN/FERMI NOTICE`.
/// - [`Format::ClassicBinary`]: exactly 160 bytes that are not text.
/// - [`Format::Unknown`]: anything else.
pub fn detect(bytes: &[u8]) -> Format {
    let text = trim_start(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes));
    match text.first() {
        Some(b'<') => {
            return if xml_root_local_name(text) == Some(b"VOEvent".as_slice()) {
                Format::VoEvent
            } else {
                Format::Unknown
            };
        }
        // The same test as `Json::parse`: skipping the value without building
        // it would accept numbers out of range, lone surrogates and nesting
        // deeper than the limit, which `Json::parse` refuses.
        Some(b'{' | b'[') if Json::parse(bytes).is_ok() => {
            return Format::Json;
        }
        _ => {}
    }
    if is_text(bytes) {
        if classic::looks_like_classic_text(text) {
            Format::ClassicText
        } else {
            Format::Unknown
        }
    } else if bytes.len() == CLASSIC_PACKET_LEN {
        Format::ClassicBinary
    } else {
        Format::Unknown
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// UTF-8 without control characters other than tab, CR and LF.
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n'))
    })
}

/// The local name (prefix removed) of the first element of an XML document,
/// skipping the prolog. `None` when the prolog is not closed or no element
/// follows it.
fn xml_root_local_name(mut xml: &[u8]) -> Option<&[u8]> {
    loop {
        xml = trim_start(xml);
        let skip_to = |xml: &[u8], end: &[u8]| -> Option<usize> {
            xml.windows(end.len())
                .position(|w| w == end)
                .map(|i| i + end.len())
        };
        if xml.starts_with(b"<?") {
            xml = &xml[skip_to(xml, b"?>")?..];
        } else if xml.starts_with(b"<!--") {
            xml = &xml[skip_to(xml, b"-->")?..];
        } else if xml.starts_with(b"<!") {
            // A doctype without an internal subset is all GCN could send; one
            // with `[...]` would end early here and then fail to find a root.
            xml = &xml[skip_to(xml, b">")?..];
        } else {
            let name = xml.strip_prefix(b"<")?;
            let end = name
                .iter()
                .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/'))
                .unwrap_or(name.len());
            let name = &name[..end];
            let local = match name.iter().rposition(|&b| b == b':') {
                Some(colon) => &name[colon + 1..],
                None => name,
            };
            return (!local.is_empty()).then_some(local);
        }
    }
}

/// Milliseconds since the Unix epoch for an ISO 8601 date and time such as
/// `2018-04-22T21:54:11.05`, `2026-02-07T00:55:47.933189Z` or
/// `2024-05-01T10:00:00+02:00`.
///
/// A time without an offset is taken as UTC, which is what GCN means.
/// Fractions beyond milliseconds are truncated. `None` when `text` is not in
/// that form or names an impossible date or time (leap seconds included).
pub fn iso_time_to_unix_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = text.split_at_checked(10)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (year, month, day) = (num(date, 0..4)?, num(date, 5..7)?, num(date, 8..10)?);
    // Bytes 4 and 7 sit between ASCII digits, so they are whole characters.
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((_, "")) => return None,
        Some((hms, fraction)) => (hms, fraction),
        None => (clock, ""),
    };
    let (hour, minute, second) = (num(hms, 0..2)?, num(hms, 3..5)?, num(hms, 6..8)?);
    if hms.len() != 8 || hms.as_bytes()[2] != b':' || hms.as_bytes()[5] != b':' {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    let offset_minutes = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let (sign, hhmm) = match zone.split_at(1) {
                ("+", hhmm) => (1, hhmm),
                ("-", hhmm) => (-1, hhmm),
                _ => return None,
            };
            let (h, m) = match hhmm.split_once(':') {
                Some(pair) => pair,
                None => hhmm.split_at_checked(2)?,
            };
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (num(h, 0..2)?, num(m, 0..2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// The decimal number in `text[range]`, digits only.
fn num(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let digits = text.get(range)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`), so no date library is needed in the guest.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes of a sample GCN alert kept in the repository's test data.
    pub(crate) fn sample(relative: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/data/samples/{relative}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading sample {path}: {e}"))
    }

    /// Every sample file in one folder of the test data, by file name.
    pub(crate) fn samples_in(folder: &str) -> Vec<(String, Vec<u8>)> {
        let dir = format!(
            "{}/../tests/data/samples/{folder}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no samples in {dir}");
        files
            .into_iter()
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect()
    }

    #[test]
    fn detects_every_sample_by_content() {
        for (folder, expected) in [
            ("voevent", Format::VoEvent),
            ("json", Format::Json),
            ("binary", Format::ClassicBinary),
        ] {
            for (name, bytes) in samples_in(folder) {
                assert_eq!(detect(&bytes), expected, "{folder}/{name}");
            }
        }
    }

    #[test]
    fn detects_prologs_prefixes_and_look_alikes() {
        let cases: [(&[u8], Format); 12] = [
            (b"\xEF\xBB\xBF\n <VOEvent ivorn='x'/>", Format::VoEvent),
            (
                b"<?xml version='1.0'?><!-- c --><!DOCTYPE v><v:VOEvent>",
                Format::VoEvent,
            ),
            (b"<?xml version='1.0'?><html></html>", Format::Unknown),
            (b"<?xml version='1.0'", Format::Unknown),
            (b" [1, 2]", Format::Json),
            (b"{\"ra\": ", Format::Unknown),
            (
                b"TITLE:           GCN/FERMI NOTICE\nNOTICE_DATE:     Fri 17 May 24\n",
                Format::ClassicText,
            ),
            (b"hello world", Format::Unknown),
            (&[0u8; 160], Format::ClassicBinary),
            (&[0u8; 159], Format::Unknown),
            (&[b' '; 160], Format::Unknown),
            (b"", Format::Unknown),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                detect(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn iso_times_become_unix_millis() {
        let cases = [
            ("1970-01-01T00:00:00", Some(0)),
            ("2018-04-22T21:54:11.05", Some(1_524_434_051_050)),
            ("2026-02-07T00:55:47.933189Z", Some(1_770_425_747_933)),
            ("2024-02-29 12:00:00Z", Some(1_709_208_000_000)),
            ("2024-05-01T10:00:00+02:00", Some(1_714_550_400_000)),
            ("2024-05-01T10:00:00-0130", Some(1_714_563_000_000)),
            ("1969-12-31T23:59:59.999", Some(-1)),
            ("2023-02-29T00:00:00", None),
            ("2024-05-01T24:00:00", None),
            ("2024-05-01T10:00:60", None),
            ("2024-05-01T10:00:00.", None),
            ("2024-05-01", None),
            ("2024/05/01T10:00:00", None),
            ("not a time", None),
        ];
        for (text, expected) in cases {
            assert_eq!(iso_time_to_unix_millis(text), expected, "{text}");
        }
    }

    #[test]
    fn payload_errors_name_the_format() {
        let err = PayloadError::new(Format::VoEvent, "no ivorn");
        assert_eq!(err.to_string(), "invalid VOEvent: no ivorn");
        assert_eq!((err.format(), err.detail()), (Format::VoEvent, "no ivorn"));
    }
}
