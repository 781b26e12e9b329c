"""alerthost.state natively: the in-memory stand-in follows the host's
semantics (message-time TTL, writes of a failed call discarded, limits)."""

import unittest
from datetime import timedelta

import alerthost
from alerthost import state, testing
from alerthost.testing import MemoryState, StateLimitError


def at(topic: str, millis: int) -> alerthost.Message:
    return alerthost.Message(topic, b"", timestamp=alerthost.Timestamp(millis))


def counter(msg: alerthost.Message):
    """Counts messages per topic for 100 ms; fails on the second message of
    topic ``bad`` after writing."""
    seen = state.get(msg.topic)
    seen = 0 if seen is None else seen[0]
    state.set(msg.topic, bytes([seen + 1]), ttl=timedelta(milliseconds=100))
    if msg.topic == "bad" and seen > 0:
        raise alerthost.Transient("after a write")
    return None


class MemoryStateTest(unittest.TestCase):
    def test_keys_expire_at_message_time_plus_ttl(self):
        s = MemoryState()
        s.set_now(1_000)
        s.set("a", b"1", 500)
        s.set("b", b"2")
        self.assertEqual(s.expires_at("a"), 1_500)
        s.set_now(1_499)
        self.assertEqual(s.get("a"), b"1")
        s.set_now(1_500)
        self.assertIsNone(s.get("a"), "expired at exactly now + ttl")
        self.assertEqual(s.get("b"), b"2")
        self.assertEqual(s.keys(), ["b"])
        s.delete("b")
        s.delete("never-there")
        self.assertEqual(s.keys(), [])

    def test_a_set_replaces_the_value_and_its_ttl(self):
        s = MemoryState()
        s.set_now(0)
        s.set("k", b"old", 10)
        s.set("k", b"new")
        s.set_now(1_000_000)
        self.assertEqual(s.get("k"), b"new")
        s.set("k", b"x", 2**64 - 1)
        self.assertEqual(s.expires_at("k"), 2**63 - 1)

    def test_keys_and_values_over_the_default_limits_are_refused(self):
        with self.assertRaisesRegex(StateLimitError, r"over \[handler.state\] max_value_kib = 64"):
            MemoryState().set("k", bytes(64 * 1024 + 1))
        with self.assertRaisesRegex(StateLimitError, r"over \[handler.state\] max_key_bytes = 256"):
            MemoryState().set("k" * 257, b"")


class StateApiTest(unittest.TestCase):
    def setUp(self):
        testing.reset_state()

    def test_text_values_are_utf8_and_ttls_are_whole_milliseconds(self):
        testing.state().set_now(0)
        state.set("k", "é", ttl=timedelta(microseconds=2500))
        self.assertEqual(state.get("k"), b"\xc3\xa9")
        self.assertEqual(testing.state().expires_at("k"), 2)
        self.assertEqual(state.ttl_millis(timedelta(days=-1)), 0)
        state.delete("k")
        self.assertIsNone(state.get("k"))

    def test_handle_uses_message_time_and_discards_writes_of_a_failed_call(self):
        testing.handle(counter, at("a", 1_000))
        testing.handle(counter, at("a", 1_050))
        self.assertEqual(testing.state().get("a"), bytes([2]))
        self.assertEqual(testing.state().expires_at("a"), 1_150)
        # 100 ms after the last write: expired, counting starts again.
        testing.handle(counter, at("a", 1_150))
        self.assertEqual(testing.state().get("a"), bytes([1]))

        testing.handle(counter, at("bad", 2_000))
        with self.assertRaises(alerthost.Transient):
            testing.handle(counter, at("bad", 2_001))
        self.assertEqual(testing.state().get("bad"), bytes([1]), "the failed call's write is gone")


if __name__ == "__main__":
    unittest.main()
