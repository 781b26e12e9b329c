"""{{name}}: an alerthost handler. It saves the messages whose payload
format is one of ``formats`` and drops every other message.

Parameters:
- ``formats``: comma-separated payload formats to save, from ``voevent``,
  ``json``, ``classic-text`` and ``classic-binary``; default
  ``voevent,json``.

Build: ``./build.sh`` (the component is ``dist/{{name}}.wasm``). Test
natively: ``python3 -m unittest``.
"""

import alerthost
from alerthost import payload

FORMATS = (payload.VOEVENT, payload.JSON, payload.CLASSIC_TEXT, payload.CLASSIC_BINARY)

formats = (payload.VOEVENT, payload.JSON)


def init(params: alerthost.Params) -> None:
    global formats
    names = tuple(name.strip() for name in params.get("formats", "voevent,json").split(","))
    for name in names:
        if name not in FORMATS:
            raise ValueError(
                f"parameter `formats`: unknown format `{name}`; use voevent, json, classic-text or classic-binary"
            )
    formats = names


def handle(msg: alerthost.Message):
    format = payload.detect(msg.value)
    if format in formats:
        return alerthost.save()
    alerthost.debug(f"{format} dropped")
    return None
