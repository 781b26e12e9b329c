"""sky-region: forward a compact JSON summary of every alert located inside a
cone on the sky; drop everything else.

The Python version of ``examples/sky-region``: same parameters, same
decisions and the same summary (``tests/languages.rs`` checks it on every
sample).

Reads GCN unified-schema JSON notices (top-level ``ra``, ``dec``,
``ra_dec_error``) and VOEvents (``WhereWhen`` position). An alert is kept
when the great-circle distance from the cone's centre to its position is at
most ``radius``; the summary sent to ``sink`` is::

    {"dec": -69.4969, "error": 0.05, "mission": "SWIFT", "offset": 42,
     "partition": 0, "ra": 225.0208, "time": "2022-07-30T15:48:54.89",
     "topic": "..."}

``mission`` is the notice's ``mission``, else the mission folder of its
``$schema``, else for a VOEvent the stream of its ivorn; ``time`` the event
time as written; ``error`` the error radius in degrees; unknown values are
``null``.

Parameters:
- ``ra``, ``dec``: centre of the cone in degrees, required; ``ra`` from 0 to
  360, ``dec`` from -90 to 90.
- ``radius``: cone radius in degrees, required, above 0 and at most 180.
- ``sink``: name of the forward sink, default ``summaries``.

Dropped: other formats, alerts without a position, alerts outside the cone.
A VOEvent that does not parse, or a position off the sky, is a bad record.

Caveat: only the centre of the error region is tested.
"""

import json
import math

import alerthost
from alerthost import payload
from alerthost.payload import Json, PayloadError, VoEvent

PARAMS = ("ra", "dec", "radius", "sink")


def show(value: float) -> str:
    """A number as Rust's ``Display`` writes it: ``361``, ``0.5``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def first(*values):
    """The first value that is not ``None``."""
    return next((v for v in values if v is not None), None)


def in_range(params: alerthost.Params, key: str, low: float, high: float) -> float:
    """Parameter ``key`` as a number from ``low`` to ``high``."""
    value = params.float(key)
    if not low <= value <= high:
        raise ValueError(f"parameter `{key}` = {show(value)} is out of range {show(low)} to {show(high)} (degrees)")
    return value


def schema_mission(schema: str):
    """``.../gcn/notices/einstein_probe/wxt/alert.schema.json`` -> ``einstein_probe``."""
    _, found, rest = schema.partition("/notices/")
    mission = rest.split("/", 1)[0]
    return mission if found and mission else None


def ivorn_stream(ivorn: str):
    """``ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos`` -> ``SWIFT``."""
    if not ivorn.startswith("ivo://") or "#" not in ivorn:
        return None
    path = ivorn[len("ivo://"):].split("#", 1)[0]
    if "/" not in path:
        return None
    stream = path.rsplit("/", 1)[1]
    return stream or None


def from_json(doc: Json):
    """The located alert of a unified-schema notice; ``None`` without a position."""
    ra, dec = doc.float("ra"), doc.float("dec")
    if ra is None or dec is None:
        return None
    schema = doc.str("$schema")
    return {
        "ra": ra,
        "dec": dec,
        "error": doc.float("ra_dec_error"),
        "time": first(doc.str("trigger_time"), doc.str("alert_datetime")),
        "mission": first(doc.str("mission"), schema_mission(schema) if schema is not None else None),
    }


def from_voevent(event: VoEvent):
    """The located alert of a VOEvent; ``None`` when it has no position."""
    position = event.position
    # GCN fills the position of notices that carry none (Fermi GBM alerts)
    # with RA 0, Dec 0 and error 0; that is not a location.
    if position is None or (position.ra, position.dec, position.error_radius) == (0.0, 0.0, 0.0):
        return None
    return {
        "ra": position.ra,
        "dec": position.dec,
        "error": position.error_radius,
        "time": event.iso_time,
        "mission": ivorn_stream(event.ivorn),
    }


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine formula)."""
    dec1, dec2 = math.radians(dec1), math.radians(dec2)
    half_ddec = (dec2 - dec1) / 2.0
    half_dra = math.radians(ra2 - ra1) / 2.0
    h = math.sin(half_ddec) ** 2 + math.cos(dec1) * math.cos(dec2) * math.sin(half_dra) ** 2
    return math.degrees(2.0 * math.asin(min(math.sqrt(h), 1.0)))


class Handler:
    """Forwards summaries of alerts inside a cone."""

    def __init__(self, params: alerthost.Params) -> None:
        for key in params.keys():
            if key not in PARAMS:
                raise ValueError(f"unknown parameter `{key}`; sky-region takes `ra`, `dec`, `radius` and `sink`")
        self.ra = in_range(params, "ra", 0.0, 360.0)
        self.dec = in_range(params, "dec", -90.0, 90.0)
        self.radius = in_range(params, "radius", 0.0, 180.0)
        self.sink = params.get("sink", "summaries").strip()
        if self.radius == 0.0:
            raise ValueError("parameter `radius` must be above 0")
        if not self.sink:
            raise ValueError("parameter `sink` is empty")

    def handle(self, msg: alerthost.Message):
        try:
            kind = payload.detect(msg.value)
            if kind == payload.JSON:
                alert = from_json(Json.parse(msg.value))
            elif kind == payload.VOEVENT:
                alert = from_voevent(VoEvent.parse(msg.value))
            else:
                alert = None
        except PayloadError as e:
            raise alerthost.BadRecord(str(e))
        if alert is None:
            return None
        if not (0.0 <= alert["ra"] <= 360.0 and -90.0 <= alert["dec"] <= 90.0):
            raise alerthost.BadRecord(f"position ra={show(alert['ra'])}, dec={show(alert['dec'])} is not on the sky")
        if angular_distance(self.ra, self.dec, alert["ra"], alert["dec"]) > self.radius:
            return None
        summary = dict(alert, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        value = json.dumps(summary, separators=(",", ":"), sort_keys=True, allow_nan=False)
        return alerthost.forward(self.sink, value=value)
