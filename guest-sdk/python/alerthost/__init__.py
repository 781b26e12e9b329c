"""alerthost: write alerthost message handlers in Python.

A handler is a module (``handler.py``) with either a function::

    import alerthost

    def init(params: alerthost.Params) -> None:     # optional
        ...

    def handle(msg: alerthost.Message):
        return alerthost.save()

or a class named ``Handler``::

    class Handler:
        def __init__(self, params: alerthost.Params): ...
        def handle(self, msg: alerthost.Message): ...

``handle`` returns a list of actions (``save``/``forward``), one action, or
``None`` to drop the message, and raises ``BadRecord``, ``Transient`` or
``Fatal`` when it cannot decide. ``init`` (or ``__init__``) refuses the
handler by raising ``ValueError``. Any other exception is a bug: inside a
component it traps, and the host applies the handler's error policy.

Everything here is plain Python (standard library only), so a handler is
unit-tested natively with ``python -m unittest``. ``alerthost.payload`` reads
the formats GCN alerts come in; ``alerthost.state`` remembers across messages,
with an in-memory stand-in in ``alerthost.testing`` for native tests. ``build.sh`` (next to this package) turns a
handler module into a component with componentize-py.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

from . import payload

__all__ = [
    "WIT_VERSION",
    "Header",
    "Timestamp",
    "Message",
    "Save",
    "Forward",
    "Action",
    "save",
    "forward",
    "HandlerError",
    "BadRecord",
    "Transient",
    "Fatal",
    "Params",
    "LEVELS",
    "log",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "payload",
]

#: The version of the ``alerthost:handler`` WIT package this SDK targets.
WIT_VERSION = "0.2.0"

Bytes = Union[bytes, bytearray, memoryview, str]


def _bytes(value: Optional[Bytes]) -> Optional[bytes]:
    """``value`` as bytes; a ``str`` is encoded as UTF-8."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


@dataclass
class Header:
    """One Kafka record header. Kafka allows a header without a value."""

    name: str
    value: Optional[bytes] = None

    def __post_init__(self) -> None:
        self.value = _bytes(self.value)


@dataclass
class Timestamp:
    """A message timestamp: milliseconds since the Unix epoch (UTC) and who
    set it, ``"create-time"`` (the producer) or ``"log-append-time"`` (the
    broker)."""

    millis: int
    kind: str = "create-time"


@dataclass
class Message:
    """One Kafka message as the host hands it to the handler.

    ``Message("topic", b"payload")`` builds one for a test: partition 0,
    offset 0, no key, timestamp or headers.
    """

    topic: str
    value: bytes
    partition: int = 0
    offset: int = 0
    timestamp: Optional[Timestamp] = None
    key: Optional[bytes] = None
    headers: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.value = _bytes(self.value) or b""
        self.key = _bytes(self.key)

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header named ``name``."""
        for h in self.headers:
            if h.name == name:
                return h.value
        return None


@dataclass
class Save:
    """Write the message (or ``value``) to the handler's save sink.

    ``name`` is a file name hint; the host sanitizes it and keeps it inside
    the sink's directory. ``None``: the host names the file after topic,
    partition and offset, so a redelivered message overwrites its own file.
    """

    name: Optional[str] = None
    value: Optional[bytes] = None

    def __post_init__(self) -> None:
        self.value = _bytes(self.value)


@dataclass
class Forward:
    """Send the message to ``sink``, a sink the operator allowed this handler,
    optionally with a new key, value or headers."""

    sink: str
    key: Optional[bytes] = None
    value: Optional[bytes] = None
    headers: Optional[list] = None

    def __post_init__(self) -> None:
        self.key = _bytes(self.key)
        self.value = _bytes(self.value)
        if self.headers is not None:
            self.headers = [h if isinstance(h, Header) else Header(*h) for h in self.headers]


Action = Union[Save, Forward]


def save(name: Optional[str] = None, value: Optional[Bytes] = None) -> Save:
    """Save the message value (or ``value``) under the host's default name or
    the hint ``name``."""
    return Save(name=name, value=value)


def forward(
    sink: str,
    value: Optional[Bytes] = None,
    key: Optional[Bytes] = None,
    headers: Optional[Iterable[Union[Header, Tuple[str, Optional[Bytes]]]]] = None,
) -> Forward:
    """Forward the message (or a replacement value, key or headers) to the
    sink named ``sink``."""
    return Forward(sink=sink, key=key, value=value, headers=None if headers is None else list(headers))


class HandlerError(Exception):
    """Why a handler could not decide on a message; the kind picks the
    operator's error policy. Raise one of the subclasses."""

    kind = "handler-error"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.text == other.text  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.text))


class BadRecord(HandlerError):
    """The message is malformed or unexpected; retrying will not help."""

    kind = "bad-record"


class Transient(HandlerError):
    """A passing failure; the same message may succeed later."""

    kind = "transient"


class Fatal(HandlerError):
    """The handler cannot go on."""

    kind = "fatal"


_INTEGER = re.compile(r"[+-]?[0-9]+")


class Params:
    """The operator's parameters for a handler, in the order given.

    Built from ``(key, value)`` pairs or a dict. Lookups see the last value
    when a key is given twice. Errors are ``ValueError`` naming the key, so
    raising them from ``init`` refuses the handler with a clear message.
    """

    def __init__(self, pairs: Union[Mapping[str, str], Iterable[Tuple[str, str]], None] = None) -> None:
        if pairs is None:
            pairs = ()
        elif isinstance(pairs, Mapping):
            pairs = pairs.items()
        self._pairs = [(str(k), str(v)) for k, v in pairs]

    def __repr__(self) -> str:
        return f"Params({self._pairs!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._pairs == other._pairs

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self._pairs)

    def keys(self) -> list:
        """Every key, in the order given (repeated keys repeat)."""
        return [k for k, _ in self._pairs]

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``key``, or ``default``."""
        for k, v in reversed(self._pairs):
            if k == key:
                return v
        return default

    def require(self, key: str) -> str:
        """The value of ``key``; ``ValueError`` when it is missing."""
        value = self.get(key)
        if value is None:
            raise ValueError(f"missing parameter `{key}`")
        return value

    def float(self, key: str, default: Optional[float] = None) -> float:
        """``key`` as a number; ``default`` when absent (``ValueError`` when
        absent without a default, or when it does not parse)."""
        return self._parsed(key, default, payload.parse_f64, "a number")

    def int(self, key: str, default: Optional[int] = None) -> int:
        """``key`` as an integer; ``default`` when absent (``ValueError`` when
        absent without a default, or when it does not parse)."""
        return self._parsed(key, default, _parse_int, "an integer")

    def _parsed(self, key, default, parse, what):
        raw = self.get(key)
        if raw is None:
            if default is None:
                raise ValueError(f"missing parameter `{key}`")
            return default
        value = parse(raw)
        if value is None:
            raise ValueError(f"parameter `{key}` = {json.dumps(raw)} is not valid: not {what}")
        return value


#: Log levels, lowest first.
LEVELS = ("trace", "debug", "info", "warn", "error")


def _stderr_sink(level: str, text: str) -> None:
    print(f"[{level}] {text}", file=sys.stderr)


# Inside a component the glue replaces this with the host's `log` import.
_log_sink: Callable[[str, str], None] = _stderr_sink


def log(level: str, text: str) -> None:
    """Write one line to the host's log (capped per message by the host).
    Natively, it goes to standard error."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    _log_sink(level, str(text))


def trace(text: str) -> None:
    """Write a trace line."""
    log("trace", text)


def debug(text: str) -> None:
    """Write a debug line."""
    log("debug", text)


def info(text: str) -> None:
    """Write an info line."""
    log("info", text)


def warn(text: str) -> None:
    """Write a warning."""
    log("warn", text)


def error(text: str) -> None:
    """Write an error line."""
    log("error", text)


def actions_of(result: object) -> list:
    """What a ``handle`` returned, as a list of actions: ``None`` is none, one
    action is a list of one. Anything else is a ``TypeError``."""
    if result is None:
        return []
    if isinstance(result, (Save, Forward)):
        return [result]
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        raise TypeError(f"handle returned {type(result).__name__}; expected actions (alerthost.save/forward), a list of them, or None")
    actions = list(result)
    for action in actions:
        if not isinstance(action, (Save, Forward)):
            raise TypeError(f"handle returned a {type(action).__name__} among its actions; expected alerthost.Save or alerthost.Forward")
    return actions


def load(module: object) -> Callable[[Params], Callable[[Message], object]]:
    """How to build the handler of ``module``: a function of the parameters
    that returns the per-message function. ``module`` has a class ``Handler``
    or a function ``handle`` (with an optional ``init``)."""
    cls = getattr(module, "Handler", None)
    if isinstance(cls, type):
        if not callable(getattr(cls, "handle", None)):
            raise TypeError(f"{module.__name__}.Handler has no handle(self, msg) method")  # type: ignore[attr-defined]
        return lambda params: cls(params).handle
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise TypeError(
            f"{getattr(module, '__name__', module)} defines neither a class Handler nor a function handle(msg)"
        )
    init = getattr(module, "init", None)

    def build(params: Params) -> Callable[[Message], object]:
        if callable(init):
            init(params)
        return handle

    return build


def run(module: object, msg: Message, params: Union[Params, Mapping[str, str], None] = None) -> list:
    """Build ``module``'s handler with ``params`` and run it on one message:
    the list of actions it returns. For tests and quick checks."""
    if not isinstance(params, Params):
        params = Params(params)
    return actions_of(load(module)(params)(msg))


def _parse_int(raw: str) -> Optional[int]:
    raw = raw.strip()
    return int(raw) if _INTEGER.fullmatch(raw) else None
