//! The Rust, Python and JavaScript SDKs read the same bytes the same way.
//!
//! A corpus of the sample alerts plus generated edge cases (non-finite and
//! out-of-range numbers, deep nesting, encodings other than UTF-8, byte-order
//! marks, Unicode whitespace, entities, missing attributes and units,
//! malformed documents) goes through every payload helper of each SDK:
//! natively here for Rust, `tests/parity/dump.py` for Python and
//! `tests/parity/dump.mjs` for JavaScript. Every result must agree exactly,
//! floats bit for bit; a failure lists each file and field that differs.
//!
//! The first-notice example (which keeps state) decides every sample alert as
//! `tests/data/first-notice-expected.tsv` says, in its order, in the three
//! languages: natively (`tests/parity/first_notice.py` and `.mjs` with the
//! SDKs' in-memory state; the Rust crate's own tests read the same file),
//! and as components through `alerthost test --state-dir`, twice over the
//! same state directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use alerthost_guest::payload::{
    self, ClassicBinary, Format, Json, PayloadError, Role, VoEvent, iso_time_to_unix_millis,
};
use serde_json::{Value, json};

/// Paths looked up in every JSON document, besides its top-level keys (the
/// same list is in dump.py and dump.mjs).
const JSON_PATHS: [&str; 12] = [
    "",
    "ra",
    "dec",
    "ra_dec_error",
    "trigger_time",
    "id.0",
    "id.+0",
    "id.01",
    "event.classification.BNS",
    "a.b",
    "0",
    "x..y",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_owned()
}

// ---------------------------------------------------------------------------
// The corpus

/// `<VOEvent>` around `what` (inside `<What>`) and `where_when` (inside
/// `<WhereWhen>`).
fn voevent(what: &str, where_when: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<voe:VOEvent ivorn=\"ivo://test/x#1\" \
         role=\"test\" version=\"2.0\" xmlns:voe=\"http://www.ivoa.net/xml/VOEvent/v2.0\">\n\
         <Who><Date>2024-05-01T10:00:00</Date></Who>\n<What>{what}</What>\n\
         <WhereWhen>{where_when}</WhereWhen>\n</voe:VOEvent>\n"
    )
    .into_bytes()
}

/// A `WhereWhen` position in `unit` and `system`, with coordinates and error
/// radius as written.
fn position(system: Option<&str>, unit: Option<&str>, c1: &str, c2: &str, err: &str) -> String {
    let system = system.map_or(String::new(), |s| format!(" coord_system_id=\"{s}\""));
    let unit = unit.map_or(String::new(), |u| format!(" unit=\"{u}\""));
    format!(
        "<ObsDataLocation><ObservationLocation><AstroCoords{system}>\
         <Time><TimeInstant><ISOTime>2024-05-01T10:00:00.5-01:30</ISOTime></TimeInstant></Time>\
         <Position2D{unit}><Value2><C1>{c1}</C1><C2>{c2}</C2></Value2>{err}</Position2D>\
         </AstroCoords></ObservationLocation></ObsDataLocation>"
    )
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> Vec<u8> {
    let mut text = open.repeat(depth);
    text.push_str(inner);
    text.push_str(&close.repeat(depth));
    text.into_bytes()
}

fn utf16le(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

/// The generated edge cases, by file name.
fn edge_cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| cases.push((name.to_owned(), bytes));

    // JSON numbers: overflow, underflow, signed zero, integers past 64 bits,
    // decimal strings that need correct rounding.
    add("json-dec-1e400", br#"{"ra":10,"dec":1e400}"#.to_vec());
    add("json-ra-minus-1e400", br#"{"ra":-1e400,"dec":1}"#.to_vec());
    add(
        "json-max-plus",
        br#"{"ra":1.7976931348623159e308}"#.to_vec(),
    );
    add(
        "json-huge-integer",
        format!("{{\"ra\":1{}}}", "0".repeat(400)).into_bytes(),
    );
    add(
        "json-underflow-and-zeros",
        br#"{"ra":1e-400,"dec":-1e-400,"a":{"b":-0},"c":-0.0,"d":0,"e":5e-324}"#.to_vec(),
    );
    add(
        "json-big-integers",
        br#"{"ra":18446744073709551615,"dec":18446744073709551616,"a":{"b":-9223372036854775809},"c":9007199254740993,"d":123456789012345678901234567890,"e":-0}"#.to_vec(),
    );
    add(
        "json-rounding",
        br#"{"ra":2.2250738585072011e-308,"dec":0.1,"a":{"b":1.00000000000000011102230246251565404236316680908203125},"c":1.7976931348623158e308,"d":9007199254740993.0,"e":4.9406564584124654e-324,"f":2.4703282292062328e-324,"g":0.30000000000000004441}"#.to_vec(),
    );
    // JSON nesting around serde_json's limit of 128, and far past it.
    for depth in [127, 128, 129, 5000] {
        add(
            &format!("json-arrays-{depth}"),
            nested(depth, "[", "]", "1"),
        );
        add(
            &format!("json-objects-{depth}"),
            nested(depth, "{\"a\":", "}", "{\"b\":1}"),
        );
    }
    add(
        "json-depth-in-strings",
        format!("{{\"a\":\"{}\"}}", "[{".repeat(500)).into_bytes(),
    );
    // JSON strings, keys and encodings.
    add("json-bom", b"\xEF\xBB\xBF{\"ra\":1}".to_vec());
    add("json-utf16", utf16le("{\"ra\":1}"));
    add("json-latin1", b"{\"name\":\"caf\xE9\",\"ra\":1}".to_vec());
    add("json-lone-surrogate", br#"{"ra":1,"a":"\ud800"}"#.to_vec());
    add(
        "json-lone-low-surrogate",
        br#"{"ra":1,"a":"\udc00x"}"#.to_vec(),
    );
    add(
        "json-surrogate-pair",
        br#"{"ra":1,"a":{"b":"\ud83d\ude00 \u00e9"}}"#.to_vec(),
    );
    add("json-duplicate-keys", br#"{"ra":1,"ra":2}"#.to_vec());
    add(
        "json-odd-keys",
        br#"{"__proto__":{"x":1},"constructor":"c","a.b":1,"":2,"0":"zero","x":{"":{"y":3}}}"#
            .to_vec(),
    );
    add(
        "json-array-root",
        br#"[1,"x",{"ra":1},[true,false,null]]"#.to_vec(),
    );
    add(
        "json-types",
        br#"{"ra":"12.5","dec":true,"ra_dec_error":null,"id":["a",2],"trigger_time":"2024-05-01T10:00:00Z"}"#
            .to_vec(),
    );
    add("json-control-in-string", b"{\"a\":\"x\x01\"}".to_vec());
    add("json-trailing", br#"{"a":1} x"#.to_vec());
    add("json-nbsp-before", "\u{a0}{\"a\":1}".as_bytes().to_vec());
    add(
        "json-whitespace",
        b" \t\r\n{ \"ra\" :\t1 , \"dec\":[ ] }\r\n".to_vec(),
    );
    add("json-nan", br#"{"ra":NaN}"#.to_vec());

    // VOEvents: what GCN leaves out, units, coordinate systems.
    add(
        "xml-missing-attributes",
        voevent(
            "<Param value=\"1\"/><Param name=\"no-value\"/><Param name=\"child\"><Value> 2.5 </Value></Param>\
             <Param name=\"both\" value=\"3\"><Value>4</Value></Param>\
             <Group><Param name=\"in-unnamed-group\" value=\"5\"/></Group>\
             <Group name=\"outer\"><Group name=\"inner\"><Param name=\"deep\" value=\"6\" unit=\"s\" ucd=\"time\"/></Group>\
             <Param name=\"after-inner\" value=\"7\"/></Group>",
            &position(None, None, "1", "2", ""),
        ),
    );
    add(
        "xml-radians",
        voevent(
            "",
            &position(
                Some("UTC-FK5-GEO"),
                Some("rad"),
                "1",
                "2",
                "<Error2Radius>0.1</Error2Radius>",
            ),
        ),
    );
    add(
        "xml-unit-with-space",
        voevent(
            "",
            &position(Some("UTC-ICRS-TOPO"), Some("deg "), "1", "2", ""),
        ),
    );
    add(
        "xml-galactic",
        voevent(
            "",
            &position(Some("UTC-GAL-GEO"), Some("deg"), "1", "2", ""),
        ),
    );
    add(
        "xml-non-finite-position",
        voevent("", &position(None, Some("deg"), "1e400", "2", "")),
    );
    add(
        "xml-signed-zero-position",
        voevent(
            "",
            &position(
                None,
                Some("deg"),
                "-0",
                "+0.0",
                "<Error2Radius> 5e-324 </Error2Radius>",
            ),
        ),
    );
    add(
        "xml-numbers",
        voevent(
            "<Param name=\"big\" value=\"1e400\"/><Param name=\"inf\" value=\"inf\"/>\
             <Param name=\"nan\" value=\"NaN\"/><Param name=\"minus-zero\" value=\"-0\"/>\
             <Param name=\"dot\" value=\"1.\"/><Param name=\"lead-dot\" value=\".5\"/>\
             <Param name=\"exp\" value=\"1e5\"/><Param name=\"bad-exp\" value=\"1e\"/>\
             <Param name=\"hex\" value=\"0x10\"/><Param name=\"under\" value=\"1_000\"/>\
             <Param name=\"round\" value=\"2.2250738585072011e-308\"/>\
             <Param name=\"Packet_Type\" value=\" +131 \"/>",
            "",
        ),
    );
    for (name, value) in [
        ("packet-type-float", "131.0"),
        ("packet-type-overflow", "2147483648"),
        ("packet-type-leading-zero", "0131"),
        ("packet-type-nbsp", "\u{a0}131\u{a0}"),
    ] {
        add(
            &format!("xml-{name}"),
            voevent(
                &format!("<Param name=\"Packet_Type\" value=\"{value}\"/>"),
                "",
            ),
        );
    }
    // Whitespace beyond ASCII: Rust's `trim` (Unicode White_Space) is the
    // reference; NEL, NBSP, em space, line separator are trimmed, a BOM is not.
    add(
        "xml-unicode-whitespace",
        voevent(
            "<Param name=\"nbsp\" value=\"\u{a0}5\u{a0}\"/><Param name=\"em\" value=\"\u{2003}6\"/>\
             <Param name=\"nel\" value=\"\u{85}7\"/><Param name=\"bom\" value=\"\u{feff}8\"/>\
             <Param name=\"ls\"><Value>\u{2028}9\u{3000}</Value></Param>",
            "",
        ),
    );
    add(
        "xml-entities",
        voevent(
            "<Param name=\"a&amp;b\" value=\"&lt;&#65;&#x1F600;&quot;&apos;&gt;\"/>\
             <Param name=\"text\"><Value>&#x20;1&#46;5&#x20;</Value></Param>",
            "",
        ),
    );
    add(
        "xml-undefined-entity",
        voevent("<Param name=\"x\" value=\"&nbsp;\"/>", ""),
    );
    add(
        "xml-char-ref-zero",
        voevent("<Param name=\"x\" value=\"&#0;\"/>", ""),
    );
    add(
        "xml-char-ref-surrogate",
        voevent("<Param name=\"x\" value=\"&#xD800;\"/>", ""),
    );
    add(
        "xml-dtd-entity",
        b"<!DOCTYPE VOEvent [<!ENTITY e \"5\">]><VOEvent ivorn=\"i\"><What><Param name=\"x\"><Value>&e;</Value></Param></What></VOEvent>".to_vec(),
    );
    add(
        "xml-duplicate-attribute-unread-element",
        voevent("<Description a=\"1\" a=\"2\"/>", ""),
    );
    add(
        "xml-bad-entity-unread-attribute",
        voevent("<Param name=\"x\" value=\"1\" other=\"&bogus;\"/>", ""),
    );
    add(
        "xml-line-ends",
        voevent(
            "<Param name=\"crlf\" value=\"a\r\nb\"/><Param name=\"cr\" value=\"a\rb\"/>\
             <Param name=\"tab\" value=\"a\tb\"/><Param name=\"text\"><Value>a\r\nb\rc</Value></Param>",
            "",
        ),
    );
    add(
        "xml-cdata-and-comments",
        voevent(
            "<Param name=\"cdata\"><Value><![CDATA[ 1<2 ]]></Value></Param>\
             <Param name=\"split\"><Value>1<!-- comment -->2<?pi x?>3</Value></Param>",
            "",
        ),
    );
    add(
        "xml-control-character",
        voevent("<Param name=\"x\" value=\"a\x1cb\"/>", ""),
    );
    add(
        "xml-char-ref-control",
        voevent("<Param name=\"x\" value=\"&#1;\"/>", ""),
    );
    add(
        "xml-char-ref-control-in-text",
        voevent("<Param name=\"x\"><Value>&#x1F;</Value></Param>", ""),
    );
    add(
        "xml-char-ref-fffe",
        voevent("<Param name=\"x\" value=\"&#xFFFE;\"/>", ""),
    );
    add(
        "xml-noncharacter-fffe",
        voevent("<Param name=\"x\" value=\"a\u{fffe}\"/>", ""),
    );
    add(
        "xml-latin1",
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><VOEvent ivorn=\"i\"><What><Param name=\"n\" value=\"caf\xE9\"/></What></VOEvent>".to_vec(),
    );
    add(
        "xml-latin1-declared-ascii",
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><VOEvent ivorn=\"i\"><What><Param name=\"n\" value=\"cafe\"/></What></VOEvent>".to_vec(),
    );
    add(
        "xml-utf16",
        utf16le("<?xml version=\"1.0\" encoding=\"UTF-16\"?><VOEvent ivorn=\"i\"/>"),
    );
    add(
        "xml-bom",
        b"\xEF\xBB\xBF<VOEvent ivorn=\"i\" role=\"utility\"/>".to_vec(),
    );
    add(
        "xml-role-other",
        b"<VOEvent ivorn=\"i\" role=\"Test\"/>".to_vec(),
    );
    add("xml-no-ivorn", b"<VOEvent role=\"test\"/>".to_vec());
    add("xml-other-root", b"<VOEventX ivorn=\"i\"/>".to_vec());
    add(
        "xml-two-roots",
        b"<VOEvent ivorn=\"i\"/><VOEvent ivorn=\"j\"/>".to_vec(),
    );
    add("xml-text-after-root", b"<VOEvent ivorn=\"i\"/> x".to_vec());
    add("xml-unclosed", b"<VOEvent ivorn=\"i\"><What>".to_vec());
    add(
        "xml-mismatched",
        b"<VOEvent ivorn=\"i\"><What></Who></VOEvent>".to_vec(),
    );
    add(
        "xml-times",
        b"<VOEvent ivorn=\"i\"><Who><Author><Date>x</Date></Author><Date> 2024-02-29 12:00:00Z\xC2\xA0</Date></Who>\
          <WhereWhen><ISOTime>2024-05-01T10:00:00+0200</ISOTime><ISOTime>1999</ISOTime></WhereWhen></VOEvent>"
            .to_vec(),
    );
    add(
        "xml-param-outside-what",
        b"<VOEvent ivorn=\"i\"><Param name=\"x\" value=\"1\"/><How><Param name=\"y\" value=\"2\"/></How><What><Param name=\"z\" value=\"3\"/></What></VOEvent>".to_vec(),
    );
    // Deep nesting: parsing must stay linear in depth.
    let groups = 5000;
    let mut deep = String::from("<VOEvent ivorn=\"i\"><What>");
    for i in 0..groups {
        deep.push_str(&format!("<Group name=\"g{i}\">"));
    }
    deep.push_str("<Param name=\"bottom\" value=\"1\"/>");
    deep.push_str(&"</Group>".repeat(groups));
    deep.push_str("<Param name=\"after\" value=\"2\"/></What></VOEvent>");
    add("xml-deep-groups", deep.into_bytes());
    let mut where_deep = String::from("<VOEvent ivorn=\"i\"><WhereWhen>");
    where_deep.push_str(&"<X>".repeat(groups));
    where_deep.push_str(&position(None, None, "3", "4", ""));
    where_deep.push_str(&"</X>".repeat(groups));
    where_deep.push_str("</WhereWhen></VOEvent>");
    add("xml-deep-where-when", where_deep.into_bytes());

    // Classic text: byte-order mark, Unicode whitespace, bad UTF-8, line ends.
    add(
        "text-bom",
        b"\xEF\xBB\xBFTITLE:  GCN NOTICE\nNOTICE_DATE: today\n".to_vec(),
    );
    add(
        "text-unicode-whitespace",
        "TITLE: A\n\u{a0}continued\nKEY:\u{a0}v\u{2003}\n\u{85}NEL: x\n\u{feff}BOM: y\nFS\u{1c}: z\n"
            .as_bytes()
            .to_vec(),
    );
    add(
        "text-invalid-utf8",
        b"TITLE: caf\xE9\nK2: \xF0\x9F\x98\nK3: \xED\xA0\x80 end\nK4: \xC0\xAF\n".to_vec(),
    );
    add(
        "text-line-ends",
        b"A: 1\rB: 2\r\nC: 3\r\n\r\n  D: continued\nE:\r".to_vec(),
    );
    add("text-lower-case-key", b"Title: x\nTITLE: y\n".to_vec());
    // Classic binary: negative words, and 160 bytes of text.
    add(
        "binary-high-bits",
        (0..160u8).map(|i| i.wrapping_mul(37) | 0x80).collect(),
    );
    add("binary-text", vec![b'A'; 160]);
    add("binary-short", vec![0xFF; 159]);
    cases
}

/// The sample alerts and the edge cases, written into `dir`; their paths.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in ["voevent", "json", "binary"] {
        let from = repo().join("tests/data/samples").join(folder);
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            let to = dir.join(format!(
                "sample-{folder}-{}",
                path.file_name().unwrap().to_string_lossy()
            ));
            std::fs::copy(&path, &to).unwrap();
            files.push(to);
        }
    }
    assert_eq!(files.len(), 52, "the sample corpus changed");
    for (name, bytes) in edge_cases() {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------
// The Rust side of the dump (dump.py and dump.mjs write the same shape)

/// A float as the hex of its bits, so the comparison is exact.
fn num(x: f64) -> Value {
    if x.is_nan() {
        json!("nan")
    } else {
        json!(format!("{:016x}", x.to_bits()))
    }
}

fn opt_num(x: Option<f64>) -> Value {
    x.map_or(Value::Null, num)
}

/// A JSON value as a flat list of tokens, object keys sorted by code point
/// (serde_json's map is ordered by UTF-8 bytes, which is the same order):
/// nesting depth cannot break the comparison.
fn canonical(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Number(n) => {
            let bits = num(n.as_f64().expect("every JSON number is a float here"));
            out.push(format!("#{}", bits.as_str().unwrap()));
        }
        Value::String(s) => out.push(format!("${s}")),
        Value::Array(items) => {
            out.push("[".into());
            for item in items {
                canonical(item, out);
            }
            out.push("]".into());
        }
        Value::Object(map) => {
            out.push("{".into());
            for (key, item) in map {
                out.push(format!("k{key}"));
                canonical(item, out);
            }
            out.push("}".into());
        }
        other => out.push(other.to_string()),
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::VoEvent => "voevent",
        Format::Json => "json",
        Format::ClassicText => "classic-text",
        Format::ClassicBinary => "classic-binary",
        Format::Unknown => "unknown",
    }
}

fn attempt(result: Result<Value, PayloadError>) -> Value {
    result.unwrap_or_else(|e| json!({ "error": format_name(e.format()) }))
}

fn role_name(role: &Role) -> &str {
    match role {
        Role::Observation => "observation",
        Role::Prediction => "prediction",
        Role::Utility => "utility",
        Role::Test => "test",
        Role::Other(other) => other,
    }
}

fn dump_voevent(bytes: &[u8]) -> Result<Value, PayloadError> {
    let event = VoEvent::parse(bytes)?;
    let names: BTreeSet<&str> = event.params.iter().map(|p| p.name.as_str()).collect();
    let groups: BTreeSet<(&str, &str)> = event
        .params
        .iter()
        .filter_map(|p| Some((p.group.as_deref()?, p.name.as_str())))
        .collect();
    Ok(json!({
        "ivorn": event.ivorn,
        "role": role_name(&event.role),
        "version": event.version,
        "date": event.date,
        "params": event.params.iter().map(|p| json!([p.name, p.value, p.unit, p.ucd, p.group])).collect::<Vec<_>>(),
        "iso_time": event.iso_time,
        "position": event.position.map(|p| json!([num(p.ra), num(p.dec), opt_num(p.error_radius)])),
        "packet_type": event.packet_type(),
        "time_unix_millis": event.time_unix_millis(),
        "date_unix_millis": event.date.as_deref().and_then(iso_time_to_unix_millis),
        "param": names.iter().map(|&n| json!([n, event.param(n), attempt(event.param_f64(n).map(num))])).collect::<Vec<_>>(),
        "group_param": groups.iter().map(|&(g, n)| json!([g, n, event.group_param(g, n)])).collect::<Vec<_>>(),
    }))
}

fn dump_json(bytes: &[u8]) -> Result<Value, PayloadError> {
    let doc = Json::parse(bytes)?;
    let mut paths: Vec<&str> = JSON_PATHS.to_vec();
    if let Value::Object(map) = doc.value() {
        paths.extend(map.keys().map(String::as_str));
    }
    let mut value = Vec::new();
    canonical(doc.value(), &mut value);
    Ok(json!({
        "value": value,
        "lookup": paths.iter().map(|&p| json!([p, doc.str(p), opt_num(doc.f64(p))])).collect::<Vec<_>>(),
    }))
}

fn dump_binary(bytes: &[u8]) -> Result<Value, PayloadError> {
    let packet = ClassicBinary::parse(bytes)?;
    Ok(json!({
        "words": packet.words.to_vec(),
        "word_40": packet.word(40),
        "packet_type": packet.packet_type(),
        "trigger_number": packet.trigger_number(),
        "burst_tjd": packet.burst_tjd(),
        "burst_sod": num(packet.burst_sod()),
        // JavaScript numbers are doubles: exact for every real date, the
        // nearest double for a packet of garbage. Compared as doubles.
        "burst_unix_millis": num(packet.burst_unix_millis() as f64),
    }))
}

fn dump(bytes: &[u8]) -> Value {
    json!({
        "detect": format_name(payload::detect(bytes)),
        "voevent": attempt(dump_voevent(bytes)),
        "json": attempt(dump_json(bytes)),
        "classic_text_pairs": payload::classic_text_pairs(bytes),
        "classic_binary": attempt(dump_binary(bytes)),
    })
}

/// One dump per file from a dump script, by file name.
fn dumps_of(program: &str, script: &str, files: &[PathBuf]) -> Vec<Value> {
    let output = Command::new(program)
        .arg(repo().join("tests/parity").join(script))
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len(), "{script}: one line per file");
    lines
}

/// Every field (dotted path) where `a` and `b` differ.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let (x, y) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{key}"), x, y, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}.{i}"), x, y, out);
            }
        }
        _ if a != b => {
            let show = |v: &Value| {
                let text = v.to_string();
                if text.len() > 160 {
                    format!("{}…", &text[..text.floor_char_boundary(160)])
                } else {
                    text
                }
            };
            out.push(format!("{path}: {} vs {}", show(a), show(b)));
        }
        _ => {}
    }
}

#[test]
fn rust_python_and_javascript_sdks_agree_on_every_helper_over_the_edge_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let python = dumps_of("python3", "dump.py", &files);
    let js = dumps_of("node", "dump.mjs", &files);
    let mut problems = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut rust = dump(&std::fs::read(file).unwrap());
        rust["file"] = json!(name);
        for (lang, other) in [("python", &python[i]), ("js", &js[i])] {
            let mut found = Vec::new();
            differences("", &rust, other, &mut found);
            problems.extend(
                found
                    .into_iter()
                    .map(|d| format!("{name} rust vs {lang}: {d}")),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The first-notice example: the same decisions in the three languages

/// The rows of `tests/data/first-notice-expected.tsv`, in the order the
/// messages are handled: (sample path under `tests/data/samples`, event key
/// or `-`, decision).
fn first_notice_expected() -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(repo().join("tests/data/first-notice-expected.tsv")).unwrap();
    let rows: Vec<_> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert!(
                fields.len() >= 3,
                "a row has path, key and decision: {line:?}"
            );
            (
                fields[0].to_owned(),
                fields[1].to_owned(),
                fields[2].to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 52, "every sample alert, once");
    rows
}

/// The sample files of the expected-decisions file, in its order.
fn first_notice_files() -> Vec<PathBuf> {
    first_notice_expected()
        .iter()
        .map(|(path, _, _)| repo().join("tests/data/samples").join(path))
        .collect()
}

/// Whether a decision saves (or forwards) the message.
fn passes(decision: &str) -> bool {
    matches!(decision, "first" | "smaller" | "retraction")
}

#[test]
fn first_notice_decides_every_sample_as_expected_natively_in_python_and_javascript() {
    let expected = first_notice_expected();
    let files = first_notice_files();
    let mut problems = Vec::new();
    for (program, script) in [("python3", "first_notice.py"), ("node", "first_notice.mjs")] {
        let output = Command::new(program)
            .arg(repo().join("tests/parity").join(script))
            .args(&files)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {script} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), expected.len(), "{script}: one line per file");
        for ((path, key, decision), line) in expected.iter().zip(lines) {
            if line != format!("{decision}\t{key}") {
                problems.push(format!(
                    "{script} on {path}: expected {decision} {key}, got {line}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The Python example's own tests (the JavaScript ones run with the other
    // examples' under `node --test` in examples/js).
    let output = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(repo().join("examples/python/first-notice"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "examples/python/first-notice: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The component of an example (`first_notice`, `gbm_subthreshold`) in a
/// language: the Rust one from the examples workspace, the Python and
/// JavaScript ones from the SDKs' build scripts (quick when their inputs did
/// not change since the last build).
fn example_component(lang: &str, name: &str) -> PathBuf {
    // The build scripts write through one temporary file per output: the
    // tests of this file build one at a time (a second build of the same
    // inputs keeps the first's output).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    let examples = repo().join("examples");
    let folder = name.replace('_', "-");
    let out = examples.join(lang).join(format!("dist/{name}.wasm"));
    let mut build = match lang {
        "rust" => return alerthost_tests::example(name),
        "python" => {
            let mut cmd = Command::new(repo().join("guest-sdk/python/build.sh"));
            cmd.arg(examples.join("python").join(&folder));
            cmd
        }
        "js" => {
            let mut cmd = Command::new("node");
            cmd.arg(repo().join("guest-sdk/js/build.mjs"))
                .arg(examples.join("js").join(&folder).join("handler.js"));
            cmd
        }
        other => panic!("no {other} examples"),
    };
    build.arg(&out);
    let shown = format!("{build:?}");
    let output = build
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed (are the guest toolchains installed? scripts/guest-toolchains.sh): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A directory shared with the other tests' host processes for compiled
/// components, so each large component is compiled once.
fn component_cache() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .join("alerthost-test-component-cache")
}

#[test]
fn components_import_state_only_when_the_handler_uses_it() {
    let mut problems = Vec::new();
    for lang in ["rust", "python", "js"] {
        for (name, uses_state) in [("first_notice", true), ("gbm_subthreshold", false)] {
            let component = example_component(lang, name);
            let output = Command::new(alerthost_tests::alerthost_bin())
                .arg("check")
                .arg("--json")
                .arg(&component)
                .arg("--cache-dir")
                .arg(component_cache())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "alerthost check {}: {}",
                component.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let info: Value = serde_json::from_slice(&output.stdout).unwrap();
            let imports: Vec<&str> = info["imports"]
                .as_array()
                .expect("check lists the imports")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let imports_state = imports.contains(&"alerthost:handler/state@0.2.0");
            if imports_state != uses_state {
                problems.push(format!(
                    "{lang} {name}: imports state: {imports_state}, uses it: {uses_state} ({imports:?})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What `alerthost test --state-dir DIR` decided on each file, in order:
/// (decision, the handler's `first-notice:` log line).
fn alerthost_test_with_state(
    component: &Path,
    state_dir: &Path,
    files: &[PathBuf],
) -> Vec<(String, String)> {
    let output = Command::new(alerthost_tests::alerthost_bin())
        .arg("test")
        .arg(component)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--cache-dir")
        .arg(component_cache())
        .args(files)
        .env("ALERTHOST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "alerthost test {}: {}",
        component.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            let logged = line["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["text"].as_str())
                .find(|text| text.starts_with("first-notice: "))
                .unwrap_or_default()
                .to_owned();
            (
                line["decision"].as_str().unwrap_or_default().to_owned(),
                logged,
            )
        })
        .collect()
}

#[test]
fn first_notice_components_decide_every_sample_as_expected_and_remember_across_runs() {
    let expected = first_notice_expected();
    let files = first_notice_files();
    let mut problems = Vec::new();
    for lang in ["rust", "python", "js"] {
        let component = example_component(lang, "first_notice");
        let state = tempfile::tempdir().unwrap();
        // A second run with the same --state-dir sees every event of the
        // first: nothing is new or smaller any more.
        for run in ["first run", "second run"] {
            let decided = alerthost_test_with_state(&component, state.path(), &files);
            assert_eq!(
                decided.len(),
                files.len(),
                "{lang} {run}: one line per file"
            );
            for ((path, key, decision), (got, logged)) in expected.iter().zip(&decided) {
                let decision = match (run, decision.as_str()) {
                    ("second run", "first" | "smaller") => "repeat",
                    (_, other) => other,
                };
                let want = (
                    if passes(decision) { "save" } else { "drop" },
                    format!("first-notice: {decision} {key}"),
                );
                if (got.as_str(), logged) != (want.0, &want.1) {
                    problems.push(format!(
                        "{lang} {run} on {path}: expected {} ({}), got {got} ({logged})",
                        want.0, want.1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
