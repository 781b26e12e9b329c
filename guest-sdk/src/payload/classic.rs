//! GCN classic formats: text notices (`KEY:  value` lines) and 160-byte
//! binary packets (the socket format).

use super::{CLASSIC_PACKET_LEN, Format, PayloadError};

/// The `KEY: value` pairs of a GCN classic text notice, in order, keys as
/// written and values trimmed. A key may repeat (`COMMENTS:` usually does).
///
/// A line that starts with whitespace, or that has no `KEY:` prefix, continues
/// the previous value and is appended to it after one space. Blank lines and
/// anything before the first key are skipped. Invalid UTF-8 is replaced with
/// U+FFFD rather than refused, since notices are ASCII.
pub fn classic_text_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let content = line.trim();
        if content.is_empty() {
            continue;
        }
        let key_value = line
            .split_once(':')
            .filter(|(key, _)| !line.starts_with(char::is_whitespace) && is_key(key));
        match (key_value, pairs.last_mut()) {
            (Some((key, value)), _) => pairs.push((key.to_owned(), value.trim().to_owned())),
            (None, Some((_, value))) => {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(content);
            }
            (None, None) => {}
        }
    }
    pairs
}

/// Whether `text` (already known to be text, leading whitespace removed)
/// starts with a classic notice line: an upper-case `KEY:`.
pub(super) fn looks_like_classic_text(text: &[u8]) -> bool {
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(colon) = first_line.iter().position(|&b| b == b':') else {
        return false;
    };
    let key = &first_line[..colon];
    std::str::from_utf8(key).is_ok_and(is_key)
        && key.iter().any(u8::is_ascii_uppercase)
        && !key.iter().any(u8::is_ascii_lowercase)
}

fn is_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A GCN classic binary packet: 160 bytes read as 40 big-endian signed
/// 32-bit words.
///
/// The meaning of most words depends on the packet type; see GCN's socket
/// packet definitions (<https://gcn.gsfc.nasa.gov/sock_pkt_def_doc.html>).
/// The accessors here cover the words that mean the same in the common
/// notice types; read the others with [`ClassicBinary::word`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicBinary {
    /// The 40 words, in packet order.
    pub words: [i32; 40],
}

impl ClassicBinary {
    /// Read a packet; the error says so when `bytes` is not exactly 160
    /// bytes long.
    pub fn parse(bytes: &[u8]) -> Result<ClassicBinary, PayloadError> {
        if bytes.len() != CLASSIC_PACKET_LEN {
            return Err(PayloadError::new(
                Format::ClassicBinary,
                format!(
                    "a packet is {CLASSIC_PACKET_LEN} bytes, this payload is {}",
                    bytes.len()
                ),
            ));
        }
        let mut words = [0; 40];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = i32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(ClassicBinary { words })
    }

    /// Word `i` (0 to 39); `None` past the end.
    pub fn word(&self, i: usize) -> Option<i32> {
        self.words.get(i).copied()
    }

    /// GCN's notice type number (word 0), such as 61 for
    /// `SWIFT_BAT_GRB_POS_ACK` or 131 for `FERMI_GBM_SUBTHRESH`.
    pub fn packet_type(&self) -> i32 {
        self.words[0]
    }

    /// The trigger or observation number (word 4) in most notice types. Swift
    /// packets keep the observation segment in the top 8 bits; mask with
    /// `0x00FF_FFFF` for the trigger number alone.
    pub fn trigger_number(&self) -> i32 {
        self.words[4]
    }

    /// Truncated Julian Day of the event (word 5; TJD = JD - 2440000.5).
    pub fn burst_tjd(&self) -> i32 {
        self.words[5]
    }

    /// Seconds of day (UTC) of the event (word 6, in centiseconds).
    pub fn burst_sod(&self) -> f64 {
        f64::from(self.words[6]) / 100.0
    }

    /// The event time from [`ClassicBinary::burst_tjd`] and
    /// [`ClassicBinary::burst_sod`], in milliseconds since the Unix epoch.
    pub fn burst_unix_millis(&self) -> i64 {
        // TJD 0 is MJD 40000 and the Unix epoch is MJD 40587.
        const TJD_OF_UNIX_EPOCH: i64 = 587;
        (i64::from(self.burst_tjd()) - TJD_OF_UNIX_EPOCH) * 86_400_000
            + i64::from(self.words[6]) * 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::iso_time_to_unix_millis;
    use crate::payload::tests::{sample, samples_in};

    #[test]
    fn reads_swift_bat_packet() {
        let packet = ClassicBinary::parse(&sample("binary/SWIFT_BAT_GRB_POS_ACK.bin")).unwrap();
        assert_eq!(packet.packet_type(), 61);
        assert_eq!(packet.trigger_number(), 1_227_767);
        assert_eq!(packet.burst_tjd(), 20441);
        assert_eq!(packet.burst_sod(), 65213.22);
        assert_eq!(
            Some(packet.burst_unix_millis()),
            iso_time_to_unix_millis("2024-05-11T18:06:53.22Z")
        );
        // Burst RA and Dec, in units of 0.0001 degree for this type.
        assert_eq!(
            (packet.word(7), packet.word(8)),
            (Some(3_366_645), Some(85_135))
        );
        assert_eq!(packet.word(40), None);
    }

    #[test]
    fn reads_type_and_trigger_of_every_packet() {
        let expected = [
            ("FERMI_GBM_ALERT.bin", 110, 736_861_702),
            ("FERMI_GBM_FIN_POS.bin", 115, 737_374_806),
            ("FERMI_GBM_FLT_POS.bin", 111, 737_238_260),
            ("FERMI_GBM_GND_POS.bin", 112, 736_967_879),
            ("FERMI_GBM_SUBTHRESH.bin", 131, 737_763_760),
            ("FERMI_LAT_MONITOR.bin", 125, 1_716_821_997),
            ("ICECUBE_CASCADE.bin", 176, 34_468_187),
            ("INTEGRAL_SPIACS.bin", 52, 0),
            ("INTEGRAL_WAKEUP.bin", 53, 0),
            ("INTEGRAL_WEAK.bin", 56, 10_696),
            ("LVC_INITIAL.bin", 151, 240_511),
            ("LVC_PRELIMINARY.bin", 150, 240_510),
            ("LVC_RETRACTION.bin", 164, 240_511),
            ("SWIFT_BAT_GRB_POS_ACK.bin", 61, 1_227_767),
            ("SWIFT_UVOT_POS.bin", 81, 1_231_488),
            ("SWIFT_XRT_POSITION.bin", 67, 1_227_767),
        ];
        let samples = samples_in("binary");
        assert_eq!(samples.len(), expected.len());
        for ((name, bytes), (want_name, packet_type, trigger)) in samples.iter().zip(expected) {
            assert_eq!(name, want_name);
            let packet = ClassicBinary::parse(bytes).unwrap();
            assert_eq!(packet.packet_type(), packet_type, "{name}");
            assert_eq!(packet.trigger_number(), trigger, "{name}");
            // All samples are from 2024, TJD 20310 to 20675.
            assert!((20310..=20675).contains(&packet.burst_tjd()), "{name}");
        }
    }

    #[test]
    fn packets_of_other_sizes_are_refused() {
        let err = ClassicBinary::parse(&[0; 161]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid classic binary packet: a packet is 160 bytes, this payload is 161"
        );
    }

    // Made up in the layout of a GCN text notice (no real one is in the test
    // data; see tests/data/samples/SOURCES.md).
    const NOTICE: &str = "TITLE:            GCN/FERMI NOTICE\r
NOTICE_DATE:      Sat 18 May 24 22:40:12 UT
NOTICE_TYPE:      Fermi-GBM Sub-Threshold
TRIGGER_NUM:      737763760
GRB_RA:           217.6800d {+14h 30m 43s} (J2000),
                  217.9000d {+14h 31m 36s} (current),
                  217.1000d {+14h 28m 24s} (1950)
GRB_DATE:         20448 TJD;   139 DOY;   24/05/18

COMMENTS:         Fermi-GBM Sub-Threshold Notice.
COMMENTS:         Reliability: 2
";

    #[test]
    fn reads_text_notice_pairs_with_continuations() {
        assert_eq!(
            crate::payload::detect(NOTICE.as_bytes()),
            Format::ClassicText
        );
        let pairs = classic_text_pairs(NOTICE.as_bytes());
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("TITLE", "GCN/FERMI NOTICE"),
                ("NOTICE_DATE", "Sat 18 May 24 22:40:12 UT"),
                ("NOTICE_TYPE", "Fermi-GBM Sub-Threshold"),
                ("TRIGGER_NUM", "737763760"),
                (
                    "GRB_RA",
                    "217.6800d {+14h 30m 43s} (J2000), 217.9000d {+14h 31m 36s} (current), \
                     217.1000d {+14h 28m 24s} (1950)"
                ),
                ("GRB_DATE", "20448 TJD;   139 DOY;   24/05/18"),
                ("COMMENTS", "Fermi-GBM Sub-Threshold Notice."),
                ("COMMENTS", "Reliability: 2"),
            ]
        );
    }

    #[test]
    fn text_before_the_first_key_is_skipped() {
        let pairs = classic_text_pairs(b"  stray\nKEY:\n  more\nnot a key: x\n");
        assert_eq!(pairs, [("KEY".to_owned(), "more not a key: x".to_owned())]);
    }
}
