"""first-notice: pass the first notice of each GCN event, and any later
notice of it whose error radius is smaller than that of every earlier one;
retractions always pass. Everything else is dropped.

The Python version of ``examples/first-notice``: same parameters, same
rules, same decisions (``tests/parity.rs`` checks them on every sample). The
Rust crate's ``src/lib.rs`` explains the event keys, error radii and
retractions in full; in short:

- key ``MISSION/ID``: the mission from GCN's notice type (VOEvent
  ``Packet_Type``, packet word 0), the JSON ``$schema`` folders, or the text
  ``TITLE``; the ID from ``TrigID`` / ``GraceID`` / ``run_id``+``event_id`` /
  ``Trans_Num``, the packet's trigger number, JSON ``id.0`` or ``ref_ID``,
  IGWN ``superevent_id``, text ``TRIGGER_NUM``;
- error radius in degrees (0 is none): VOEvent ``Error2Radius``, JSON
  ``ra_dec_error``, packet word 11 / 10000 for position notices, text
  ``GRB_ERROR`` in deg, arcmin or arcsec;
- the state keeps, per key, the smallest radius passed so far as decimal
  text (empty when none), expiring ``ttl_days`` after the last passing
  notice.

Parameters:
- ``sink``: forward passing notices to this sink instead of saving them.
- ``ttl_days``: how long an event is remembered, 1 to 3650, default 30.
"""

import re
from datetime import timedelta
from typing import List, Optional, Tuple

import alerthost
from alerthost import payload, state
from alerthost.payload import ClassicBinary, Json, VoEvent

PARAMS = ("sink", "ttl_days")

#: GCN notice types whose packet word 11 is the error radius in 1/10000
#: degree (see the Rust crate).
POSITION_PACKETS = (53, 54, 55, 56, 61, 67, 81, 97, 111, 112, 115, 131, 173, 174, 176)

FIRST = "first"
SMALLER = "smaller"
RETRACTION = "retraction"
REPEAT = "repeat"
NO_EVENT = "no-event"
PASSING = (FIRST, SMALLER, RETRACTION)


class Notice:
    """What a notice says about its event."""

    def __init__(self, key: str, error_radius: Optional[float], retraction: bool) -> None:
        self.key = key
        self.error_radius = error_radius
        self.retraction = retraction

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Notice) and (self.key, self.error_radius, self.retraction) == (
            other.key,
            other.error_radius,
            other.retraction,
        )

    def __repr__(self) -> str:
        return f"Notice({self.key!r}, {self.error_radius!r}, {self.retraction!r})"


class Handler:
    """Passes first notices and better localisations."""

    def __init__(self, params: alerthost.Params) -> None:
        for key in params.keys():
            if key not in PARAMS:
                raise ValueError(f"unknown parameter `{key}`; first-notice takes `sink` and `ttl_days`")
        days = params.int("ttl_days", 30)
        if not 1 <= days <= 3650:
            raise ValueError(f"parameter `ttl_days` = {days} is out of range: 1 to 3650")
        sink = params.get("sink")
        if sink is not None:
            sink = payload.trim(sink)
            if not sink:
                raise ValueError("parameter `sink` is empty")
        self.sink = sink
        self.ttl = timedelta(days=days)

    def handle(self, msg: alerthost.Message):
        decision, key = self.decide(msg.value)
        alerthost.debug(f"first-notice: {decision} {key or '-'}")
        if decision not in PASSING:
            return None
        return alerthost.forward(self.sink) if self.sink is not None else alerthost.save()

    def decide(self, data: bytes) -> Tuple[str, Optional[str]]:
        """Decide on one payload and record the decision in the state: the
        decision and the event key."""
        n = notice(data)
        if n is None:
            return NO_EVENT, None
        stored = state.get(n.key)
        seen = stored is not None
        # The smallest radius passed so far; None when none had one.
        best = payload.parse_f64(stored.decode("utf-8", "replace")) if seen else None
        if n.retraction:
            decision = RETRACTION
        elif not seen:
            decision = FIRST
        elif n.error_radius is not None and (best is None or n.error_radius < best):
            decision = SMALLER
        else:
            decision = REPEAT
        if decision in (FIRST, SMALLER):
            record = n.error_radius
        elif decision == RETRACTION and not seen:
            # A retraction of an unseen event makes it seen.
            record = None
        else:
            return decision, n.key
        state.set(n.key, "" if record is None else repr(record), ttl=self.ttl)
        return decision, n.key


def notice(data: bytes) -> Optional[Notice]:
    """The event key, error radius and retraction flag of a notice in any of
    GCN's formats; ``None`` when it names no event this handler knows."""
    fmt = payload.detect(data)
    try:
        if fmt == payload.VOEVENT:
            return _voevent_notice(VoEvent.parse(data))
        if fmt == payload.JSON:
            return _json_notice(Json.parse(data))
        if fmt == payload.CLASSIC_BINARY:
            return _binary_notice(ClassicBinary.parse(data))
    except payload.PayloadError:
        return None
    if fmt == payload.CLASSIC_TEXT:
        return _text_notice(payload.classic_text_pairs(data))
    return None


def mission_of_packet(packet_type: int) -> str:
    """The mission of a GCN notice type; other types get ``gcn-TYPE``."""
    if 52 <= packet_type <= 56:
        return "integral"
    if 60 <= packet_type <= 99:
        return "swift"
    if 110 <= packet_type <= 119:
        return "fermi-gbm"
    if 120 <= packet_type <= 129:
        return "fermi-lat"
    if packet_type == 131:
        return "fermi-gbm-subthreshold"
    if 150 <= packet_type <= 154 or packet_type in (163, 164):
        return "lvk"
    if 157 <= packet_type <= 160:
        return "amon"
    if packet_type in (173, 174, 176):
        return "icecube"
    return f"gcn-{packet_type}"


def _key(mission: str, id: Optional[str]) -> Optional[str]:
    id = payload.trim(id) if id is not None else ""
    return f"{mission}/{id}" if id else None


def _positive(radius: Optional[float]) -> Optional[float]:
    return radius if radius is not None and radius > 0 else None


def _ascii_lower(text: str) -> str:
    return re.sub("[A-Z]", lambda m: m.group().lower(), text)


def _voevent_notice(event: VoEvent) -> Optional[Notice]:
    packet_type = event.packet_type()
    if packet_type is None:
        return None
    mission = mission_of_packet(packet_type)
    if mission == "lvk":
        id = event.param("GraceID")
    elif mission == "icecube":
        run, number = event.param("run_id"), event.param("event_id")
        if run is None or number is None:
            return None
        id = f"{payload.trim(run)}_{payload.trim(number)}"
    elif mission == "fermi-gbm-subthreshold":
        id = event.param("Trans_Num")
    else:
        id = event.param("TrigID")
    key = _key(mission, id)
    if key is None:
        return None

    def flag(name: str, value: str) -> bool:
        found = event.param(name)
        return found is not None and _ascii_lower(payload.trim(found)) == _ascii_lower(value)

    radius = event.position.error_radius if event.position is not None else None
    return Notice(
        key,
        _positive(radius),
        packet_type == 164 or flag("Retraction", "true") or flag("AlertType", "Retraction"),
    )


def _json_notice(doc: Json) -> Optional[Notice]:
    alert_type = doc.str("alert_type")
    retraction = alert_type is not None and _ascii_lower(payload.trim(alert_type)) == "retraction"
    superevent = doc.str("superevent_id")
    if superevent is not None:
        key = _key("lvk", superevent)
        return None if key is None else Notice(key, None, retraction)
    schema = doc.str("$schema")
    if schema is None or "/notices/" not in schema:
        return None
    path = schema.split("/notices/", 1)[1]
    if "/" not in path:
        return None
    mission = path.rsplit("/", 1)[0].replace("/", "-")
    id = doc.str("id.0")
    if id is None:
        id = doc.str("ref_ID")
    key = _key(mission, id)
    return None if key is None else Notice(key, _positive(doc.float("ra_dec_error")), retraction)


def _binary_notice(packet: ClassicBinary) -> Optional[Notice]:
    packet_type = packet.packet_type
    mission = mission_of_packet(packet_type)
    trigger = packet.trigger_number
    if mission == "swift":
        # The top 8 bits are the observation segment.
        trigger &= 0x00FFFFFF
    if trigger <= 0:
        return None
    id = f"{packet.word(23)}_{trigger}" if mission == "icecube" else str(trigger)
    radius = packet.words[11] / 10_000.0 if packet_type in POSITION_PACKETS else None
    key = _key(mission, id)
    return None if key is None else Notice(key, _positive(radius), packet_type == 164)


def _text_notice(pairs: List[Tuple[str, str]]) -> Optional[Notice]:
    values = {}
    for k, v in pairs:
        values.setdefault(k, v)
    title = values.get("TITLE")
    if title is None or not title.startswith("GCN/") or not title.endswith(" NOTICE"):
        return None
    source = _ascii_lower(payload.trim(title[len("GCN/") : -len(" NOTICE")]))
    notice_type = _ascii_lower(values.get("NOTICE_TYPE", ""))
    if source == "fermi":
        if "sub-threshold" in notice_type:
            mission = "fermi-gbm-subthreshold"
        elif "lat" in notice_type:
            mission = "fermi-lat"
        else:
            mission = "fermi-gbm"
    elif source == "lvc":
        mission = "lvk"
    else:
        mission = source
    trigger = values.get("TRIGGER_NUM")
    if trigger is None:
        return None
    key = _key(mission, re.split("[ ,]", trigger)[0])
    if key is None:
        return None
    error = values.get("GRB_ERROR")
    radius = _text_radius(error) if error is not None else None
    return Notice(key, _positive(radius), "retraction" in notice_type)


def _text_radius(text: str) -> Optional[float]:
    """A classic text ``GRB_ERROR`` such as ``7.60 [deg radius, statistical
    only]``, in degrees."""
    words = [w for w in re.split("[ \t\n\x0c\r]+", text) if w]
    if len(words) < 2:
        return None
    number = payload.parse_f64(words[0])
    if number is None or number != number or number in (float("inf"), float("-inf")):
        return None
    unit = re.split("[,\\]]", words[1].lstrip("["))[0]
    return {"deg": number, "arcmin": number / 60.0, "arcsec": number / 3600.0}.get(unit)
