"""The Python first-notice example's decisions, natively with the SDK's
in-memory state: one line per message file given, in the order given,
``DECISION<TAB>KEY`` (``-`` when none). The message times are 1 ms apart from
2026-01-01T00:00:00Z. tests/parity.rs compares the output with the expected
decisions and with first_notice.mjs."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "guest-sdk", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "python", "first-notice"))

import alerthost  # noqa: E402
from alerthost import testing  # noqa: E402

import handler  # noqa: E402

T0 = 1_767_225_600_000


def main() -> None:
    h = handler.Handler(alerthost.Params())
    testing.reset_state()
    for i, path in enumerate(sys.argv[1:]):
        with open(path, "rb") as f:
            msg = alerthost.Message("gcn", f.read(), timestamp=alerthost.Timestamp(T0 + i))
        decision = []
        # `decide` is what `handle` runs; its result is what `handle` logs.
        testing.handle(lambda m: decision.extend(h.decide(m.value)), msg)
        print(f"{decision[0]}\t{decision[1] or '-'}")


main()
