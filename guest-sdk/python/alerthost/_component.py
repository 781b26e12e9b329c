"""Glue between componentize-py's bindings of the ``alerthost:handler`` world
and the SDK's plain types. Imported only inside a component (the build
script's entry module calls ``export``); natively ``wit_world`` does not
exist.
"""

from __future__ import annotations

from typing import Callable, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit

import alerthost
import alerthost.state

try:
    from wit_world.imports import state as wit_state
except ImportError:
    # Built without the host's state interface: build.sh found no use of
    # `alerthost.state` in the handler's sources.
    wit_state = None

_LEVELS = {
    "trace": wit.Level.TRACE,
    "debug": wit.Level.DEBUG,
    "info": wit.Level.INFO,
    "warn": wit.Level.WARN,
    "error": wit.Level.ERROR,
}

_KINDS = {
    wit.TimestampKind.CREATE_TIME: "create-time",
    wit.TimestampKind.LOG_APPEND_TIME: "log-append-time",
}


def _host_log(level: str, text: str) -> None:
    wit_world.log(_LEVELS[level], text)


class _HostState:
    """``alerthost.state`` inside a component: the host's ``state`` import."""

    def get(self, key: str) -> Optional[bytes]:
        return wit_state.get(key)

    def set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None:
        wit_state.set(key, value, ttl_ms)

    def delete(self, key: str) -> None:
        wit_state.delete(key)


class _NoState:
    """``alerthost.state`` in a component built without the host's state
    interface: every call is a bug that says how to fix the build."""

    def _refuse(self, *_args: object) -> None:
        raise RuntimeError(
            "this component was built without the host's state interface: build.sh "
            "found no use of `alerthost.state` in the handler's .py files; import it "
            "there (`from alerthost import state`) and rebuild"
        )

    get = set = delete = _refuse


def _message(msg: wit.Message) -> alerthost.Message:
    ts = msg.timestamp
    return alerthost.Message(
        topic=msg.topic,
        value=msg.value,
        partition=msg.partition,
        offset=msg.offset,
        timestamp=None if ts is None else alerthost.Timestamp(ts.millis, _KINDS[ts.kind]),
        key=msg.key,
        headers=[alerthost.Header(h.name, h.value) for h in msg.headers],
    )


def _action(action: alerthost.Action) -> wit.Action:
    if isinstance(action, alerthost.Save):
        return wit.Action_Save(wit.SaveOptions(name=action.name, value=action.value))
    headers = None
    if action.headers is not None:
        headers = [wit.Header(name=h.name, value=h.value) for h in action.headers]
    return wit.Action_Forward(
        wit.ForwardOptions(sink=action.sink, key=action.key, value=action.value, headers=headers)
    )


def _error(error: alerthost.HandlerError) -> wit.HandlerError:
    if isinstance(error, alerthost.Transient):
        return wit.HandlerError_Transient(error.text)
    if isinstance(error, alerthost.Fatal):
        return wit.HandlerError_Fatal(error.text)
    return wit.HandlerError_BadRecord(error.text)


def export(module: object) -> type:
    """The ``WitWorld`` class componentize-py exports, running the handler of
    ``module`` (see ``alerthost.load``)."""
    build = alerthost.load(module)
    alerthost._log_sink = _host_log
    alerthost.state._backend = _HostState() if wit_state is not None else _NoState()
    # One handler per instance, built by `init`; componentize-py may make a
    # new `WitWorld` object per call, so it lives here, not on `self`.
    state: dict = {}

    class WitWorld(wit_world.WitWorld):
        def init(self, params: list) -> None:
            try:
                state["handle"] = build(alerthost.Params(params))
            except ValueError as e:
                raise Err(str(e))
            except Exception as e:  # a bug in init: say what it was
                raise Err(f"{type(e).__name__}: {e}")

        def handle(self, msg: wit.Message) -> list:
            handle: Optional[Callable] = state.get("handle")
            if handle is None:
                raise Err(wit.HandlerError_Fatal("handle called before init"))
            try:
                result = handle(_message(msg))
            except alerthost.HandlerError as e:
                raise Err(_error(e))
            except Exception as e:
                # A bug: say what it was, then trap (the host applies the
                # error policy; the traceback follows on stderr).
                _host_log("error", f"handle raised {type(e).__name__}: {e}")
                raise
            return [_action(a) for a in alerthost.actions_of(result)]

    return WitWorld
