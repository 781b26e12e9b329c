"""Per-handler state kept by the host: a small key-value store that outlives
messages, restarts and hot swaps (the WIT ``state`` interface).

Inside a component each function calls the host. Natively (``python -m
unittest``) they use the in-memory :class:`alerthost.testing.MemoryState`,
which follows the host's semantics; run a message through
:func:`alerthost.testing.handle` so that its timestamp drives expiry and a
failed call leaves the state as it was.

Semantics (the host's, in short): writes made while handling a message take
effect with that message, and are discarded when the handler fails on it; a
key set with a ``ttl`` expires that long after the *message's* timestamp
(message time, so a replay expires keys alike); in ``init``, ``get`` works
and ``set``/``delete`` fail ``init``. A key or value over the operator's
limits (``[handler.state]``, by default 256-byte keys and 64 KiB values)
stops the call, and the message fails under the handler's error policy.

A component imports the host's ``state`` interface only when its handler
imports this module (``build.sh`` looks for ``alerthost.state``, ``from
alerthost import state`` or ``state.get(``/``set(``/``delete(`` in the
handler's sources); a handler without state runs on hosts and configurations
that offer none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Optional, Protocol, Union

__all__ = ["get", "set", "delete", "ttl_millis"]

Bytes = Union[bytes, bytearray, memoryview, str]


class Backend(Protocol):
    """Where the functions here go: the host inside a component, a
    ``MemoryState`` natively."""

    def get(self, key: str) -> Optional[bytes]: ...

    def set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None: ...

    def delete(self, key: str) -> None: ...


# Natively, alerthost.testing puts its MemoryState here; inside a component
# the glue puts the host's `state` import.
_backend: Optional[Backend] = None


def _current() -> Backend:
    if _backend is None:
        from . import testing  # installs the in-memory stand-in

        testing.reset_state()
    assert _backend is not None
    return _backend


def get(key: str) -> Optional[bytes]:
    """The value stored under ``key``; ``None`` when there is none or it has
    expired."""
    return _current().get(str(key))


def set(key: str, value: Bytes, ttl: Union[timedelta, None] = None) -> None:  # noqa: A001 - the WIT's name
    """Store ``value`` (bytes, or text as UTF-8) under ``key``. With ``ttl``
    (a ``timedelta``), the key expires that long after the timestamp of the
    message being handled (whole milliseconds, rounded down; the host's clock
    for a message without a timestamp); without it, it stays until deleted."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    _current().set(str(key), bytes(value), None if ttl is None else ttl_millis(ttl))


def delete(key: str) -> None:
    """Remove ``key``; nothing happens when it is not there."""
    _current().delete(str(key))


def ttl_millis(ttl: timedelta) -> int:
    """``ttl`` in whole milliseconds, as the host takes it: rounded down,
    0 for a negative one, at most 2^64 - 1."""
    millis = (ttl.days * 86_400 + ttl.seconds) * 1000 + ttl.microseconds // 1000
    return min(max(millis, 0), 2**64 - 1)
