"""Native tests of the first-notice handler (python -m unittest) with the
SDK's in-memory state: the decisions on every sample alert in the order of
tests/data/first-notice-expected.tsv (written by reading the samples), and
the rules on made-up notices."""

import os
import sys
import unittest

# The SDK of this repository, so `python3 -m unittest` works from here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "guest-sdk", "python"))

import alerthost  # noqa: E402
from alerthost import Message, Params, Timestamp, testing  # noqa: E402

from handler import Handler, Notice, mission_of_packet, notice  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
#: 2026-01-01T00:00:00Z, the message time of the tests.
T0 = 1_767_225_600_000
DAY = 86_400_000


def sample(path):
    with open(os.path.join(REPO, "tests", "data", "samples", path), "rb") as f:
        return f.read()


def expected():
    """The rows of the expected-decisions file: (path, key, decision)."""
    with open(os.path.join(REPO, "tests", "data", "first-notice-expected.tsv"), encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return [tuple(line.split("\t")[:3]) for line in lines if line.strip() and not line.startswith("#")]


def decide(h, data, millis):
    """One payload through ``handle`` as the host would, at ``millis``: the
    decision and key it logged, checked against the actions it returned."""
    actions = testing.handle(h.handle, Message("gcn", data, timestamp=Timestamp(millis)))
    decision, key = _logged.pop().split(" ")[1:3]
    assert bool(actions) == (decision in ("first", "smaller", "retraction")), (decision, actions)
    return decision, None if key == "-" else key


#: The handler's log lines (it logs each decision).
_logged = []


def setUpModule():
    alerthost._log_sink = lambda level, text: _logged.append(text)


def tearDownModule():
    alerthost._log_sink = alerthost._stderr_sink


def handler(**params):
    return Handler(Params(params))


def text(title, notice_type, trigger, error=None):
    """A classic text notice in GCN's layout (no real one is in the test
    data)."""
    lines = [
        f"TITLE:            GCN/{title} NOTICE",
        "NOTICE_DATE:      Sat 18 May 24 22:40:12 UT",
        f"NOTICE_TYPE:      {notice_type}",
        f"TRIGGER_NUM:      {trigger}",
    ]
    if error is not None:
        lines.append(f"GRB_ERROR:        {error}")
    lines.append("COMMENTS:         made up for a test")
    return ("\n".join(lines) + "\n").encode()


class SamplesTest(unittest.TestCase):
    def setUp(self):
        testing.reset_state()

    def test_decides_every_sample_as_the_expected_decisions_file_says(self):
        h = handler()
        rows = expected()
        self.assertEqual(len(rows), 52, "every sample, once")
        problems = []
        for i, (path, key, want) in enumerate(rows):
            got, got_key = decide(h, sample(path), T0 + i)
            if (got, got_key or "-") != (want, key):
                problems.append(f"{path}: expected {want} {key}, got {got} {got_key or '-'}")
        self.assertEqual(problems, [])
        s = testing.state()
        self.assertEqual(len(s.keys()), 35, "the distinct keys of the file")
        self.assertEqual(s.get("fermi-gbm/792135758"), b"3.29")
        self.assertEqual(s.get("swift/1227767"), b"0.0013")
        self.assertEqual(s.get("lvk/MS260203s"), b"")

    def test_gbm_json_notices_in_the_order_gcn_sent_them(self):
        h = handler()
        # record_number 1 to 7; radii: none, 8.32, 9.23, 7.15, 1.34, 1.08, 1.
        order = ["alert", "flight1", "flight2", "flight3", "ground1", "ground2", "final"]
        decisions = [
            decide(h, sample(f"json/fermi_gbm-trigger.{name}.example.json"), T0 + i * 1000)[0]
            for i, name in enumerate(order)
        ]
        self.assertEqual(decisions, ["first", "smaller", "repeat", "smaller", "smaller", "smaller", "smaller"])

    def test_events_are_forgotten_ttl_days_after_their_last_passing_notice(self):
        h = handler(ttl_days="2")
        bat = sample("voevent/swift_bat_grb_pos_1118357.xml")
        quicklook = sample("voevent/swift_bat_quicklook_pos_1118357.xml")
        self.assertEqual(decide(h, bat, T0)[0], "first")
        self.assertEqual(decide(h, quicklook, T0 + 2 * DAY - 1)[0], "repeat")
        # A repeat does not extend the memory: two days after the first.
        self.assertEqual(decide(h, quicklook, T0 + 2 * DAY)[0], "first")
        self.assertEqual(testing.state().expires_at("swift/1118357"), T0 + 4 * DAY)

    def test_passing_notices_are_saved_or_forwarded_to_the_sink(self):
        msg = Message("gcn", sample("voevent/swift_bat_grb_pos_1118357.xml"), timestamp=Timestamp(T0))
        h = handler()
        self.assertEqual(testing.handle(h.handle, msg), [alerthost.save()])
        self.assertEqual(testing.handle(h.handle, msg), [])
        testing.reset_state()
        self.assertEqual(testing.handle(handler(sink=" firsts ").handle, msg), [alerthost.forward("firsts")])

    def test_bad_parameters_are_refused(self):
        for params, want in [
            ({"ttl_days": "0"}, "parameter `ttl_days` = 0 is out of range"),
            ({"ttl_days": "x"}, 'parameter `ttl_days` = "x" is not valid'),
            ({"sink": ""}, "parameter `sink` is empty"),
            ({"ttl": "1"}, "unknown parameter `ttl`"),
        ]:
            with self.assertRaises(ValueError) as e:
                handler(**params)
            self.assertTrue(str(e.exception).startswith(want), (str(e.exception), want))

    def test_classic_text_notices_are_keyed_by_title_and_trigger_num(self):
        cases = [
            (text("SWIFT", "Swift-BAT GRB Position", "1227767,   Seg_Num: 0", "3.00 [arcmin radius, statistical only]"),
             Notice("swift/1227767", 0.05, False)),
            (text("SWIFT", "Swift-XRT Position", "1227767,   Seg_Num: 0", "36.0 [arcsec radius, 90% containment]"),
             Notice("swift/1227767", 0.01, False)),
            (text("FERMI", "Fermi-GBM Ground Position", "737763760", "7.60 [deg radius, statistical only]"),
             Notice("fermi-gbm/737763760", 7.6, False)),
            (text("FERMI", "Fermi-GBM Sub-Threshold", "737763760", "0.00 [deg radius]"),
             Notice("fermi-gbm-subthreshold/737763760", None, False)),
            (text("FERMI", "Fermi-LAT Offline", "793795080", "0.1 [furlong]"), Notice("fermi-lat/793795080", None, False)),
            (text("LVC", "LVC Retraction", "S240511x"), Notice("lvk/S240511x", None, True)),
            (text("SWIFT", "Swift-BAT GRB Position", ""), None),
            (b"TITLE: GCN CIRCULAR\nNUMBER: 1\n", None),
        ]
        for data, want in cases:
            self.assertEqual(alerthost.payload.detect(data), alerthost.payload.CLASSIC_TEXT)
            self.assertEqual(notice(data), want, data)

    def test_a_better_localisation_in_another_format_counts_for_the_same_event(self):
        h = handler()
        bat = text("SWIFT", "Swift-BAT GRB Position", "1227767,   Seg_Num: 0", "3.00 [arcmin radius]")
        self.assertEqual(decide(h, bat, T0), ("first", "swift/1227767"))
        self.assertEqual(decide(h, sample("binary/SWIFT_BAT_GRB_POS_ACK.bin"), T0 + 1)[0], "repeat")
        self.assertEqual(decide(h, sample("binary/SWIFT_XRT_POSITION.bin"), T0 + 2)[0], "smaller")

    def test_a_retraction_of_a_seen_event_passes_and_keeps_its_record(self):
        h = handler()
        initial, retraction = sample("binary/LVC_INITIAL.bin"), sample("binary/LVC_RETRACTION.bin")
        self.assertEqual(decide(h, initial, T0)[0], "first")
        self.assertEqual(decide(h, retraction, T0 + 1)[0], "retraction")
        self.assertEqual(decide(h, retraction, T0 + 2)[0], "retraction")
        self.assertEqual(decide(h, initial, T0 + 3)[0], "repeat")

    def test_missions_of_notice_types(self):
        for packet_type, mission in [
            (53, "integral"), (61, "swift"), (97, "swift"), (110, "fermi-gbm"), (128, "fermi-lat"),
            (131, "fermi-gbm-subthreshold"), (150, "lvk"), (164, "lvk"), (158, "amon"), (176, "icecube"),
            (175, "gcn-175"), (-1, "gcn--1"),
        ]:
            self.assertEqual(mission_of_packet(packet_type), mission, packet_type)


if __name__ == "__main__":
    unittest.main()
