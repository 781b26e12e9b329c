"""Native stand-ins for what the host provides, so handler logic that keeps
``alerthost.state`` is unit-tested with ``python -m unittest``.

Natively, ``alerthost.state`` reads and writes the :class:`MemoryState`
returned by :func:`state` (one per process; :func:`reset_state` starts a
fresh one, e.g. in ``setUp``). :func:`handle` runs one message the way the
host does: the message's timestamp is the clock for expiry, and when the
handler raises, its writes are discarded.

::

    from alerthost import testing

    class OnceTest(unittest.TestCase):
        def setUp(self):
            testing.reset_state()

        def test_second_notice_is_dropped(self):
            h = handler.Handler(alerthost.Params())
            msg = alerthost.Message("t", b"x", timestamp=alerthost.Timestamp(1000))
            self.assertEqual(testing.handle(h.handle, msg), [alerthost.save()])
            self.assertEqual(testing.handle(h.handle, msg), [])
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Dict, List, Optional, Tuple

import alerthost

from . import state as _state

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "DEFAULT_MAX_VALUE_KIB",
    "MemoryState",
    "state",
    "reset_state",
    "handle",
]

#: The host's default ``[handler.state] max_key_bytes``.
DEFAULT_MAX_KEY_BYTES = 256
#: The host's default ``[handler.state] max_value_kib``.
DEFAULT_MAX_VALUE_KIB = 64

_I64_MAX = 2**63 - 1


class StateLimitError(Exception):
    """A key or value over the host's default limits (the host stops the
    call; natively, the test fails)."""


class MemoryState:
    """An in-memory state store with the host's semantics: keys set with a
    TTL expire that many milliseconds after the current message's timestamp,
    and read as absent from the first message whose timestamp is at or past
    that moment."""

    def __init__(self) -> None:
        self._entries: Dict[str, Tuple[bytes, Optional[int]]] = {}
        self._now_ms: Optional[int] = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryState) and (self._entries, self._now_ms) == (other._entries, other._now_ms)

    def __repr__(self) -> str:
        return f"MemoryState(now={self._now_ms}, entries={self._entries!r})"

    def set_now(self, millis: int) -> None:
        """Make ``millis`` (ms since the Unix epoch) the current message time."""
        self._now_ms = int(millis)

    def now(self) -> int:
        """The current message time: the one last set, else the system clock."""
        return self._now_ms if self._now_ms is not None else time.time_ns() // 1_000_000

    def get(self, key: str) -> Optional[bytes]:
        """The value under ``key``, unless absent or expired."""
        entry = self._entries.get(key)
        if entry is None or not _live(entry, self.now()):
            return None
        return entry[0]

    def set(self, key: str, value: bytes, ttl_ms: Optional[int] = None) -> None:
        """Store ``value`` under ``key``, expiring ``ttl_ms`` after the current
        message time when given."""
        _check_key(key)
        if len(value) > DEFAULT_MAX_VALUE_KIB * 1024:
            raise StateLimitError(
                f"state value for key {_quote(key)} is {len(value)} bytes, "
                f"over [handler.state] max_value_kib = {DEFAULT_MAX_VALUE_KIB}"
            )
        expires = None if ttl_ms is None else min(self.now() + ttl_ms, _I64_MAX)
        self._entries[key] = (bytes(value), expires)

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        _check_key(key)
        self._entries.pop(key, None)

    def keys(self) -> List[str]:
        """The keys that are live at the current message time, in order."""
        now = self.now()
        return sorted(k for k, entry in self._entries.items() if _live(entry, now))

    def expires_at(self, key: str) -> Optional[int]:
        """When ``key`` expires (ms since the Unix epoch); ``None`` when it is
        absent or has no TTL."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]


def _live(entry: Tuple[bytes, Optional[int]], now: int) -> bool:
    return entry[1] is None or entry[1] > now


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_key(key: str) -> None:
    size = len(key.encode("utf-8"))
    if size > DEFAULT_MAX_KEY_BYTES:
        raise StateLimitError(
            f"state key {_quote(key)} is {size} bytes, over [handler.state] max_key_bytes = {DEFAULT_MAX_KEY_BYTES}"
        )


def state() -> MemoryState:
    """The ``MemoryState`` that ``alerthost.state`` uses natively."""
    backend = _state._backend
    if not isinstance(backend, MemoryState):
        backend = reset_state()
    return backend


def reset_state() -> MemoryState:
    """Start a fresh, empty ``MemoryState`` for ``alerthost.state``."""
    fresh = MemoryState()
    _state._backend = fresh
    return fresh


def handle(handler: Callable[[alerthost.Message], object], msg: alerthost.Message) -> list:
    """Run ``handler`` (a ``handle`` function or bound method) on ``msg`` as
    the host would: the state clock is the message's timestamp (the system
    clock when it has none), and when the handler raises, its state writes
    are discarded. The actions it returned, as a list."""
    current = state()
    current.set_now(msg.timestamp.millis if msg.timestamp is not None else time.time_ns() // 1_000_000)
    before = copy.deepcopy(current._entries)
    try:
        return alerthost.actions_of(handler(msg))
    except BaseException:
        current._entries = before
        raise
