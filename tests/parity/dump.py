"""Every payload helper's result on each file named on the command line, one
JSON line per file, in the shape tests/parity.rs compares across the Rust,
Python and JavaScript SDKs (dump.mjs and the Rust side write the same)."""

import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "guest-sdk", "python"))

from alerthost import payload  # noqa: E402
from alerthost.payload import ClassicBinary, Json, PayloadError, VoEvent  # noqa: E402

# Paths looked up in every JSON document, besides its top-level keys.
JSON_PATHS = ["", "ra", "dec", "ra_dec_error", "trigger_time", "id.0", "id.+0", "id.01", "event.classification.BNS", "a.b", "0", "x..y"]


def num(x):
    """A float as the hex of its bits, so the comparison is exact."""
    if x is None:
        return None
    if math.isnan(x):
        return "nan"
    return struct.pack(">d", x).hex()


def canonical(value, out=None):
    """A JSON value as a flat list of tokens, object keys sorted by code
    point: nesting depth cannot break the comparison."""
    out = [] if out is None else out
    if value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, (int, float)):
        out.append("#" + num(float(value)))
    elif isinstance(value, str):
        out.append("$" + value)
    elif isinstance(value, list):
        out.append("[")
        for item in value:
            canonical(item, out)
        out.append("]")
    else:
        out.append("{")
        for key in sorted(value):
            out.append("k" + key)
            canonical(value[key], out)
        out.append("}")
    return out


def attempt(f):
    try:
        return f()
    except PayloadError as e:
        return {"error": e.format}


def voevent(data):
    event = VoEvent.parse(data)
    names = sorted({p.name for p in event.params})
    groups = sorted({(p.group, p.name) for p in event.params if p.group is not None})
    position = event.position
    return {
        "ivorn": event.ivorn,
        "role": event.role,
        "version": event.version,
        "date": event.date,
        "params": [[p.name, p.value, p.unit, p.ucd, p.group] for p in event.params],
        "iso_time": event.iso_time,
        "position": None if position is None else [num(position.ra), num(position.dec), num(position.error_radius)],
        "packet_type": event.packet_type(),
        "time_unix_millis": event.time_unix_millis(),
        "date_unix_millis": None if event.date is None else payload.iso_time_to_unix_millis(event.date),
        "param": [[n, event.param(n), attempt(lambda: num(event.param_float(n)))] for n in names],
        "group_param": [[g, n, event.group_param(g, n)] for g, n in groups],
    }


def json_doc(data):
    doc = Json.parse(data)
    paths = list(JSON_PATHS)
    if isinstance(doc.value, dict):
        paths += sorted(doc.value)
    return {
        "value": canonical(doc.value),
        "lookup": [[p, doc.str(p), num(doc.float(p))] for p in paths],
    }


def binary(data):
    packet = ClassicBinary.parse(data)
    return {
        "words": list(packet.words),
        "word_40": packet.word(40),
        "packet_type": packet.packet_type,
        "trigger_number": packet.trigger_number,
        "burst_tjd": packet.burst_tjd,
        "burst_sod": num(packet.burst_sod),
        "burst_unix_millis": num(float(packet.burst_unix_millis)),
    }


def dump(data):
    return {
        "detect": payload.detect(data),
        "voevent": attempt(lambda: voevent(data)),
        "json": attempt(lambda: json_doc(data)),
        "classic_text_pairs": [list(p) for p in payload.classic_text_pairs(data)],
        "classic_binary": attempt(lambda: binary(data)),
    }


for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    print(json.dumps({"file": os.path.basename(path), **dump(data)}, ensure_ascii=True))
