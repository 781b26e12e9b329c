"""Payload helpers: format detection and field access for the formats GCN
alerts come in, with the same rules as the Rust SDK's ``payload`` module.

A handler may receive messages from any topic, so it should decide by
content: ``detect`` looks at the bytes, then ``VoEvent``, ``Json``,
``classic_text_pairs`` or ``ClassicBinary`` read them. Standard library only
(``xml.parsers.expat``, ``json``, ``struct``), so it works the same natively
and inside a component.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple
from xml.parsers import expat

__all__ = [
    "VOEVENT",
    "JSON",
    "CLASSIC_TEXT",
    "CLASSIC_BINARY",
    "UNKNOWN",
    "CLASSIC_PACKET_LEN",
    "PayloadError",
    "detect",
    "trim",
    "Param",
    "Position",
    "VoEvent",
    "Json",
    "classic_text_pairs",
    "ClassicBinary",
    "iso_time_to_unix_millis",
    "parse_f64",
]

#: An IVOA VOEvent XML document (``<VOEvent>`` or ``<voe:VOEvent>`` root).
VOEVENT = "voevent"
#: A JSON document, such as a GCN unified-schema notice or an IGWN alert.
JSON = "json"
#: A GCN classic text notice: lines of ``KEY:  value``.
CLASSIC_TEXT = "classic-text"
#: A GCN classic binary packet: 160 bytes, 40 big-endian 32-bit words.
CLASSIC_BINARY = "classic-binary"
#: None of the above, including XML with another root element.
UNKNOWN = "unknown"

_FORMAT_NAMES = {
    VOEVENT: "VOEvent",
    JSON: "JSON",
    CLASSIC_TEXT: "classic text notice",
    CLASSIC_BINARY: "classic binary packet",
    UNKNOWN: "unknown payload",
}

#: Size of a GCN classic binary packet, in bytes.
CLASSIC_PACKET_LEN = 160

_BOM = b"\xef\xbb\xbf"
# Rust's `is_ascii_whitespace`: space, tab, LF, form feed, CR.
_ASCII_SPACE = b" \t\n\x0c\r"
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_KEY = re.compile(r"[A-Za-z0-9_]+")
# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips:
# Python's own `str.strip()` also strips U+001C to U+001F and would disagree.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# serde_json's nesting limit: a document 128 arrays or objects deep is refused.
_JSON_MAX_DEPTH = 127
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_SURROGATE = re.compile("[\ud800-\udfff]")
# The forms Rust's `f64::from_str` accepts.
_F64 = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


class PayloadError(ValueError):
    """Why a payload could not be read as the format asked for.

    ``format`` is the format it was read as, ``detail`` what is wrong;
    ``str()`` gives ``invalid VOEvent: <detail>``.
    """

    def __init__(self, format: str, detail: str) -> None:
        super().__init__(f"invalid {_FORMAT_NAMES[format]}: {detail}")
        self.format = format
        self.detail = detail


def trim(text: str) -> str:
    """``text`` without leading and trailing whitespace, as Rust's
    ``str::trim`` defines it (Unicode White_Space: NBSP and NEL yes, a
    byte-order mark and U+001C to U+001F no), like the JavaScript SDK's
    ``trim``."""
    return text.strip(_WHITESPACE)



def parse_f64(text: str) -> Optional[float]:
    """``text`` (surrounding whitespace allowed) as a number, in the forms a
    Rust ``f64`` accepts; ``None`` otherwise. May be infinite or NaN."""
    text = trim(text)
    if not _F64.fullmatch(text):
        return None
    return float(text)


def _parse_finite(text: str) -> Optional[float]:
    value = parse_f64(text)
    return value if value is not None and math.isfinite(value) else None


def detect(data: bytes) -> str:
    """Guess the format of ``data`` from its content alone (never from a topic
    name).

    - ``VOEVENT``: after an optional UTF-8 byte-order mark, whitespace, XML
      declaration, comments and doctype, the root element is ``VOEvent`` with
      any namespace prefix. The rest is not checked; ``VoEvent.parse`` does.
    - ``JSON``: the first non-space byte is ``{`` or ``[`` and the whole
      payload parses as JSON.
    - ``CLASSIC_TEXT``: printable text whose first non-blank line is
      ``KEY: value`` with an upper-case key.
    - ``CLASSIC_BINARY``: exactly 160 bytes that are not text.
    - ``UNKNOWN``: anything else.
    """
    data = bytes(data)
    body = data[len(_BOM):] if data.startswith(_BOM) else data
    text = body.lstrip(_ASCII_SPACE)
    first = text[:1]
    if first == b"<":
        return VOEVENT if _xml_root_local_name(text) == b"VOEvent" else UNKNOWN
    if first in (b"{", b"["):
        try:
            _strict_json(data)
            return JSON
        except ValueError:
            pass
    if _is_text(data):
        return CLASSIC_TEXT if _looks_like_classic_text(text) else UNKNOWN
    if len(data) == CLASSIC_PACKET_LEN:
        return CLASSIC_BINARY
    return UNKNOWN


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _int(text: str) -> Any:
    """An integer as serde_json keeps it: exact within 64 bits, else the
    nearest float, refused beyond the float range."""
    # A JSON integer has no leading zeros: past 310 digits it is out of range
    # (and int() of a very long string is slow, or refused).
    if len(text) > 310:
        raise ValueError(f"number out of range: {text[:20]}...")
    value = int(text)
    if value == 0 and text.startswith("-"):
        return -0.0  # serde_json reads `-0` as the float -0.0
    return value if -(2**63) <= value < 2**64 else _float(text)


def _strict_json(data: bytes) -> Any:
    """Parse JSON as strictly as serde_json: UTF-8 only, no byte-order mark,
    no NaN or Infinity, numbers within the float range, no lone surrogates,
    at most 127 arrays or objects deep."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"invalid UTF-8 at byte {e.start}") from None
    # Counting brackets is quick; only a document with more than the limit
    # can nest that deep, and only then is it scanned token by token.
    depth = 0
    brackets = text.count("[") + text.count("{")
    for token in _JSON_NESTING.finditer(text) if brackets > _JSON_MAX_DEPTH else ():
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > _JSON_MAX_DEPTH:
                raise ValueError("recursion limit exceeded")
        elif bracket in "]}":
            depth -= 1
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_float, parse_int=_int)
    # Python keeps an unpaired \ud800 escape as a lone surrogate; serde_json
    # refuses it. Only a document with such an escape needs the walk.
    if "\\ud" not in text and "\\uD" not in text:
        return value
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError("lone surrogate in a string")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return value


def _is_text(data: bytes) -> bool:
    """UTF-8 without control characters other than tab, CR and LF."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _CONTROL.search(text) is None


def _is_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None and key.isascii()


def _looks_like_classic_text(text: bytes) -> bool:
    first_line = text.split(b"\n", 1)[0]
    colon = first_line.find(b":")
    if colon < 0:
        return False
    key = first_line[:colon].decode("utf-8", "replace")
    return _is_key(key) and any(c.isupper() for c in key) and not any(c.islower() for c in key)


def _xml_root_local_name(xml: bytes) -> Optional[bytes]:
    """The local name of the first element of an XML document, skipping the
    prolog; ``None`` when the prolog is not closed or no element follows."""
    while True:
        xml = xml.lstrip(_ASCII_SPACE)
        if xml.startswith(b"<?"):
            end = xml.find(b"?>")
            if end < 0:
                return None
            xml = xml[end + 2:]
        elif xml.startswith(b"<!--"):
            end = xml.find(b"-->")
            if end < 0:
                return None
            xml = xml[end + 3:]
        elif xml.startswith(b"<!"):
            end = xml.find(b">")
            if end < 0:
                return None
            xml = xml[end + 1:]
        else:
            if not xml.startswith(b"<"):
                return None
            name = re.match(rb"[^\s>/]*", xml[1:]).group(0)  # type: ignore[union-attr]
            local = name.rsplit(b":", 1)[-1]
            return local or None


# ---------------------------------------------------------------- ISO times


def _num(text: str, start: int, end: int) -> Optional[int]:
    digits = text[start:end]
    if len(digits) != end - start or not digits.isdigit():
        return None
    return int(digits)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
    ``days_from_civil``)."""
    if month <= 2:
        year -= 1
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def iso_time_to_unix_millis(text: str) -> Optional[int]:
    """Milliseconds since the Unix epoch for an ISO 8601 date and time such as
    ``2018-04-22T21:54:11.05``, ``2026-02-07T00:55:47.933189Z`` or
    ``2024-05-01T10:00:00+02:00``.

    A time without an offset is UTC, which is what GCN means. Fractions beyond
    milliseconds are truncated. ``None`` when ``text`` is not in that form or
    names an impossible date or time (leap seconds included).
    """
    text = trim(text)
    if not text.isascii() or len(text) < 11 or text[10] not in "Tt ":
        return None
    date, rest = text[:10], text[11:]
    year, month, day = _num(date, 0, 4), _num(date, 5, 7), _num(date, 8, 10)
    if year is None or month is None or day is None or date[4] != "-" or date[7] != "-":
        return None
    zone_at = min((i for i in (rest.find(c) for c in "Zz+-") if i >= 0), default=len(rest))
    clock, zone = rest[:zone_at], rest[zone_at:]
    hms, dot, fraction = clock.partition(".")
    if dot and not fraction:
        return None
    hour, minute, second = _num(hms, 0, 2), _num(hms, 3, 5), _num(hms, 6, 8)
    if hour is None or minute is None or second is None:
        return None
    if len(hms) != 8 or hms[2] != ":" or hms[5] != ":":
        return None
    if fraction and not fraction.isdigit():
        return None
    millis = int((fraction + "000")[:3])
    if zone in ("", "Z", "z"):
        offset_minutes = 0
    else:
        sign = {"+": 1, "-": -1}.get(zone[0])
        hhmm = zone[1:]
        if sign is None:
            return None
        if ":" in hhmm:
            h_text, m_text = hhmm.split(":", 1)
        elif len(hhmm) >= 2:
            h_text, m_text = hhmm[:2], hhmm[2:]
        else:
            return None
        h, m = _num(h_text, 0, 2), _num(m_text, 0, 2)
        if len(h_text) != 2 or len(m_text) != 2 or h is None or m is None or h > 23 or m > 59:
            return None
        offset_minutes = sign * (h * 60 + m)
    if month in (1, 3, 5, 7, 8, 10, 12):
        days_in_month = 31
    elif month in (4, 6, 9, 11):
        days_in_month = 30
    elif month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        days_in_month = 29 if leap else 28
    else:
        return None
    if day == 0 or day > days_in_month or hour > 23 or minute > 59 or second > 59:
        return None
    seconds = (
        _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60
    )
    return seconds * 1000 + millis


# ---------------------------------------------------------------- VOEvent


@dataclass
class Param:
    """One ``<Param>`` of the ``<What>`` section.

    ``value`` is the ``value`` attribute, or the text of a ``<Value>`` child
    when the attribute is absent; ``group`` the ``name`` of the innermost
    ``<Group>`` holding the param (``None`` directly under ``<What>``).
    """

    name: str
    value: str
    unit: Optional[str] = None
    ucd: Optional[str] = None
    group: Optional[str] = None


@dataclass
class Position:
    """A sky position from ``WhereWhen``, equatorial, in degrees.
    ``error_radius`` is ``Error2Radius`` when given (GCN writes 0 when the
    instrument gives none)."""

    ra: float
    dec: float
    error_radius: Optional[float] = None


@dataclass
class VoEvent:
    """A parsed VOEvent document: identity, ``Who/Date``, every ``Param``,
    and the first ``WhereWhen`` time and equatorial position.

    ``role`` is the root's ``role`` attribute as written (``observation``
    when absent; ``test`` for test notices).
    """

    ivorn: str
    role: str = "observation"
    version: Optional[str] = None
    date: Optional[str] = None
    params: List[Param] = field(default_factory=list)
    iso_time: Optional[str] = None
    position: Optional[Position] = None

    @staticmethod
    def parse(data: bytes) -> "VoEvent":
        """Parse a VOEvent document. The root must be ``VOEvent`` (any
        namespace prefix) with an ``ivorn``; the XML must be well-formed
        UTF-8. ``PayloadError`` names the line and what is wrong."""
        data = bytes(data)
        if data.startswith(_BOM):
            data = data[len(_BOM):]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PayloadError(VOEVENT, f"not UTF-8 at byte {e.start}") from None
        return _VoEventParser().run(data)

    def param(self, name: str) -> Optional[str]:
        """The value of the first param named ``name``, in a group or not."""
        for p in self.params:
            if p.name == name:
                return p.value
        return None

    def group_param(self, group: str, name: str) -> Optional[str]:
        """The value of the param ``name`` inside the group named ``group``."""
        for p in self.params:
            if p.name == name and p.group == group:
                return p.value
        return None

    def param_float(self, name: str) -> float:
        """The first param named ``name`` as a finite number;
        ``PayloadError`` says whether it is missing or not a number."""
        value = self.param(name)
        if value is None:
            raise PayloadError(VOEVENT, f"no Param named `{name}`")
        number = _parse_finite(value)
        if number is None:
            raise PayloadError(VOEVENT, f"Param `{name}` = {_rust_debug(value)} is not a number")
        return number

    def packet_type(self) -> Optional[int]:
        """GCN's notice type number, the ``Packet_Type`` param (131 for a Fermi
        GBM sub-threshold notice, 61 for a Swift BAT GRB position)."""
        value = self.param("Packet_Type")
        if value is None or not re.fullmatch(r"[+-]?[0-9]+", trim(value)):
            return None
        number = int(trim(value))
        return number if -(2**31) <= number < 2**31 else None

    def time_unix_millis(self) -> Optional[int]:
        """``iso_time`` in milliseconds since the Unix epoch."""
        return None if self.iso_time is None else iso_time_to_unix_millis(self.iso_time)


def _rust_debug(text: str) -> str:
    """``text`` quoted the way Rust's ``{:?}`` quotes a string (close enough
    for messages: double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


class _Failure(Exception):
    pass


class _VoEventParser:
    """One streaming pass over a document with expat (namespace processing
    off, so names keep their prefixes and the local name is what follows the
    colon), keeping the same state as the Rust parser."""

    def __init__(self) -> None:
        self.path: List[str] = []
        # How many of the open elements are <What> and <WhereWhen>: asking
        # whether one is open must not walk the path (deep documents would
        # take quadratic time).
        self.open_count = {"What": 0, "WhereWhen": 0}
        self.groups: List[Optional[str]] = []
        self.text: List[str] = []
        self.open_param: Optional[Param] = None
        self.position_unit: Optional[str] = None
        self.coord_system: Optional[str] = None
        self.c1: Optional[float] = None
        self.c2: Optional[float] = None
        self.error_radius: Optional[float] = None
        self.event: Optional[VoEvent] = None

    def run(self, data: bytes) -> VoEvent:
        parser = expat.ParserCreate("utf-8")
        parser.buffer_text = True
        parser.StartElementHandler = self.open
        parser.EndElementHandler = self.close
        parser.CharacterDataHandler = self.text.append
        parser.StartDoctypeDeclHandler = self.doctype
        self.parser = parser
        try:
            parser.Parse(data, True)
        except _Failure as failure:
            raise PayloadError(VOEVENT, f"line {parser.CurrentLineNumber}: {failure}") from None
        except expat.ExpatError as e:
            if self.path and e.code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]:
                raise PayloadError(VOEVENT, f"line {e.lineno}: document ends inside <{self.path[-1]}>") from None
            if self.event is None and e.code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]:
                raise PayloadError(VOEVENT, "no root element") from None
            if e.code == expat.errors.codes[expat.errors.XML_ERROR_JUNK_AFTER_DOC_ELEMENT]:
                raise PayloadError(VOEVENT, f"line {e.lineno}: text or element after the end of the root element") from None
            raise PayloadError(VOEVENT, f"line {e.lineno}: malformed XML: {expat.ErrorString(e.code)}") from None
        if self.event is None:
            raise PayloadError(VOEVENT, "no root element")
        return self.event

    def doctype(self, name: str, system_id: Any, public_id: Any, has_internal_subset: bool) -> None:
        # Entities declared there would be expanded by expat and refused as
        # unknown by the Rust and JavaScript SDKs: refuse them all alike.
        if has_internal_subset:
            raise _Failure("a doctype with an internal subset is not supported")

    def within(self, element: str) -> bool:
        return self.open_count[element] > 0

    def open(self, qname: str, attrs: dict) -> None:
        name = qname.rsplit(":", 1)[-1]
        self.text.clear()
        if not self.path:
            if name != "VOEvent":
                raise _Failure(f"root element is <{name}>, not <VOEvent>")
            if "ivorn" not in attrs:
                raise _Failure("<VOEvent> has no ivorn attribute")
            self.event = VoEvent(ivorn=attrs["ivorn"], role=attrs.get("role", "observation"), version=attrs.get("version"))
        if name == "Group":
            self.groups.append(attrs.get("name"))
        elif name == "Param" and self.within("What"):
            self.open_param = Param(
                name=attrs.get("name", ""),
                value=attrs.get("value", ""),
                unit=attrs.get("unit"),
                ucd=attrs.get("ucd"),
                group=self.groups[-1] if self.groups else None,
            )
        elif name == "AstroCoords" and self.within("WhereWhen"):
            self.coord_system = attrs.get("coord_system_id")
        elif name == "Position2D" and self.within("WhereWhen"):
            self.position_unit = attrs.get("unit")
            self.c1 = self.c2 = self.error_radius = None
        self.path.append(name)
        if name in self.open_count:
            self.open_count[name] += 1

    def close(self, qname: str) -> None:
        name = self.path.pop()
        if name in self.open_count:
            self.open_count[name] -= 1
        text = "".join(self.text)
        self.text.clear()
        in_where_when = self.within("WhereWhen")
        event = self.event
        if event is None:
            return
        parent = self.path[-1] if self.path else None
        if parent is None:
            return
        if name == "Group":
            self.groups.pop()
        elif name == "Param":
            if self.open_param is not None:
                event.params.append(self.open_param)
                self.open_param = None
        elif parent == "Param" and name == "Value":
            if self.open_param is not None and self.open_param.value == "":
                self.open_param.value = trim(text)
        elif parent == "Who" and name == "Date" and len(self.path) == 2 and event.date is None:
            event.date = trim(text)
        elif name == "ISOTime" and in_where_when and event.iso_time is None:
            event.iso_time = trim(text)
        elif in_where_when and ((parent == "Value2" and name in ("C1", "C2")) or (parent == "Position2D" and name == "Error2Radius")):
            value = _parse_finite(text)
            if value is None:
                raise _Failure(f"<{name}> {_rust_debug(trim(text))} is not a number")
            if name == "C1":
                self.c1 = value
            elif name == "C2":
                self.c2 = value
            else:
                self.error_radius = value
        elif name == "Position2D" and in_where_when and event.position is None:
            in_degrees = self.position_unit is None or self.position_unit == "deg"
            system = self.coord_system
            equatorial = system is None or "FK5" in system or "ICRS" in system
            if self.c1 is not None and self.c2 is not None and in_degrees and equatorial:
                event.position = Position(ra=self.c1, dec=self.c2, error_radius=self.error_radius)


# ---------------------------------------------------------------- JSON


class Json:
    """A parsed JSON document with dotted-path access.

    GCN unified-schema notices put what handlers usually need at the top
    level: ``ra``, ``dec`` and ``ra_dec_error`` (degrees), ``trigger_time``
    and ``alert_datetime`` (ISO 8601 UTC), ``mission``, ``instrument``,
    ``$schema``.
    """

    def __init__(self, value: Any) -> None:
        #: The whole document, as ``json.loads`` builds it.
        self.value = value

    def __repr__(self) -> str:
        return f"Json({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Json) and self.value == other.value

    @staticmethod
    def parse(data: bytes) -> "Json":
        """Parse a JSON document; ``PayloadError`` names what is wrong."""
        try:
            return Json(_strict_json(bytes(data)))
        except ValueError as e:
            raise PayloadError(JSON, str(e)) from None

    _MISSING = object()

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted ``path``: object keys and array indexes
        separated by ``.``, such as ``ra``, ``event.classification.BNS`` or
        ``id.0``. The empty path is the whole document. ``default`` when
        nothing is there (a JSON ``null`` that is there is ``None``)."""
        if path == "":
            return self.value
        value = self.value
        for segment in path.split("."):
            if isinstance(value, dict):
                if segment not in value:
                    return default
                value = value[segment]
            elif isinstance(value, list):
                if not segment.isdigit() or not segment.isascii() or int(segment) >= len(value):
                    return default
                value = value[int(segment)]
            else:
                return default
        return value

    def str(self, path: str) -> Optional[str]:
        """The string at ``path``; ``None`` when absent or not a string."""
        value = self.get(path)
        return value if isinstance(value, str) else None

    def float(self, path: str) -> Optional[float]:
        """The number at ``path``; ``None`` when absent or not a number (a
        numeric string is not converted, a boolean is not a number)."""
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)


# ---------------------------------------------------------------- classic


def classic_text_pairs(data: bytes) -> List[Tuple[str, str]]:
    """The ``KEY: value`` pairs of a GCN classic text notice, in order, keys
    as written and values trimmed. A key may repeat (``COMMENTS:`` does).

    A line that starts with whitespace, or has no ``KEY:`` prefix, continues
    the previous value after one space. Blank lines and anything before the
    first key are skipped. Invalid UTF-8 is replaced with U+FFFD.
    """
    text = bytes(data).decode("utf-8", "replace")
    pairs: List[List[str]] = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        content = trim(line)
        if not content:
            continue
        key, colon, value = line.partition(":")
        if colon and line[0] not in _WHITESPACE and _is_key(key):
            pairs.append([key, trim(value)])
        elif pairs:
            if pairs[-1][1]:
                pairs[-1][1] += " "
            pairs[-1][1] += content
    return [(k, v) for k, v in pairs]


class ClassicBinary:
    """A GCN classic binary packet: 160 bytes read as 40 big-endian signed
    32-bit words. The meaning of most words depends on the packet type (GCN's
    socket packet definitions); the properties cover the words that mean the
    same in the common notice types."""

    # TJD 0 is MJD 40000 and the Unix epoch is MJD 40587.
    _TJD_OF_UNIX_EPOCH = 587

    def __init__(self, words: Tuple[int, ...]) -> None:
        #: The 40 words, in packet order.
        self.words = tuple(words)

    def __repr__(self) -> str:
        return f"ClassicBinary(packet_type={self.packet_type})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassicBinary) and self.words == other.words

    @staticmethod
    def parse(data: bytes) -> "ClassicBinary":
        """Read a packet; ``PayloadError`` when ``data`` is not exactly 160
        bytes long."""
        data = bytes(data)
        if len(data) != CLASSIC_PACKET_LEN:
            raise PayloadError(
                CLASSIC_BINARY, f"a packet is {CLASSIC_PACKET_LEN} bytes, this payload is {len(data)}"
            )
        return ClassicBinary(struct.unpack(">40i", data))

    def word(self, i: int) -> Optional[int]:
        """Word ``i`` (0 to 39); ``None`` past the end."""
        return self.words[i] if 0 <= i < len(self.words) else None

    @property
    def packet_type(self) -> int:
        """GCN's notice type number (word 0): 61 for ``SWIFT_BAT_GRB_POS_ACK``,
        131 for ``FERMI_GBM_SUBTHRESH``."""
        return self.words[0]

    @property
    def trigger_number(self) -> int:
        """The trigger or observation number (word 4) in most notice types.
        Swift keeps the observation segment in the top 8 bits."""
        return self.words[4]

    @property
    def burst_tjd(self) -> int:
        """Truncated Julian Day of the event (word 5)."""
        return self.words[5]

    @property
    def burst_sod(self) -> float:
        """Seconds of day (UTC) of the event (word 6, in centiseconds)."""
        return self.words[6] / 100.0

    @property
    def burst_unix_millis(self) -> int:
        """The event time in milliseconds since the Unix epoch."""
        return (self.burst_tjd - self._TJD_OF_UNIX_EPOCH) * 86_400_000 + self.words[6] * 10
