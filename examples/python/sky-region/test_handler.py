"""Native tests of the sky-region handler (python -m unittest)."""

import json
import os
import sys
import unittest

# The SDK of this repository, so `python3 -m unittest` works from here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "guest-sdk", "python"))

import alerthost  # noqa: E402
from alerthost import Forward, Message, Params  # noqa: E402

from handler import Handler, angular_distance, ivorn_stream, schema_mission

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "data", "samples")


def sample(name):
    with open(os.path.join(SAMPLES, name), "rb") as f:
        return f.read()


def cone(ra, dec, radius):
    return Handler(Params({"ra": ra, "dec": dec, "radius": radius}))


def summary(region, value):
    """The summary forwarded for ``value``, or ``None`` when it is dropped."""
    actions = alerthost.actions_of(region.handle(Message("gcn.notices.any", value, partition=2, offset=77)))
    if not actions:
        return None
    (action,) = actions
    assert isinstance(action, Forward) and action.sink == "summaries", action
    assert action.key is None and action.headers is None, action
    return json.loads(action.value)


class SkyRegionTest(unittest.TestCase):
    def test_forwards_einstein_probe_json_alert_inside_the_cone(self):
        got = summary(cone("184.0", "-6.0", "1"), sample("json/einstein_probe_wxt-alert-01709259773.json"))
        self.assertEqual(
            got,
            {
                "mission": "einstein_probe",
                "time": "2026-04-09T11:45:11.949Z",
                "ra": 184.664,
                "dec": -6.146,
                "error": 0.05174976,
                "topic": "gcn.notices.any",
                "partition": 2,
                "offset": 77,
            },
        )

    def test_forwards_swift_voevent_inside_the_cone(self):
        got = summary(cone("225", "-69.5", "0.1"), sample("voevent/swift_bat_grb_pos_1118357.xml"))
        self.assertEqual(
            got,
            {
                "mission": "SWIFT",
                "time": "2022-07-30T15:48:54.89",
                "ra": 225.0208,
                "dec": -69.4969,
                "error": 0.05,
                "topic": "gcn.notices.any",
                "partition": 2,
                "offset": 77,
            },
        )

    def test_drops_alerts_outside_the_cone(self):
        self.assertIsNone(summary(cone("225", "-69.6", "0.1"), sample("voevent/swift_bat_grb_pos_1118357.xml")))
        ep = sample("json/einstein_probe_wxt-alert-01709259773.json")
        self.assertIsNone(summary(cone("4.664", "6.146", "90"), ep))

    def test_drops_alerts_without_a_position(self):
        region = cone("0", "0", "1")
        for name in (
            "voevent/fermi_gbm_alert_792135758.xml",
            "voevent/lvc_preliminary_MS260207a-1.xml",
            "json/igwn_gwalert-S230518h-initial.json",
            "json/fermi_gbm-trigger.alert.example.json",
            "json/swift_bat-Guano.Retraction.example.json",
            "binary/SWIFT_BAT_GRB_POS_ACK.bin",
        ):
            self.assertIsNone(summary(region, sample(name)), name)
        self.assertIsNone(summary(region, b"TITLE: GCN NOTICE\n"))

    def test_forwards_every_located_sample_when_the_cone_is_the_whole_sky(self):
        region = cone("0", "0", "180")
        forwarded = []
        for folder in ("voevent", "json", "binary"):
            for name in os.listdir(os.path.join(SAMPLES, folder)):
                got = summary(region, sample(f"{folder}/{name}"))
                if got is not None:
                    self.assertIsInstance(got["mission"], str, name)
                    self.assertIsInstance(got["time"], str, name)
                    forwarded.append(name)
        self.assertEqual(len(forwarded), 26, forwarded)

    def test_cone_wraps_around_ra_zero(self):
        got = summary(cone("359.5", "0", "1"), json.dumps({"ra": 0.2, "dec": 0.5, "mission": "Test"}).encode())
        self.assertEqual(got["mission"], "Test")
        self.assertIsNone(got["error"])

    def test_bad_voevent_and_off_sky_position_are_bad_records(self):
        region = cone("0", "0", "180")
        with self.assertRaises(alerthost.BadRecord) as caught:
            region.handle(Message("t", b"<voe:VOEvent ivorn='x'><What>"))
        self.assertEqual(caught.exception.text, "invalid VOEvent: line 1: document ends inside <What>")
        with self.assertRaises(alerthost.BadRecord) as caught:
            region.handle(Message("t", b'{"ra": 400, "dec": 0}'))
        self.assertEqual(caught.exception.text, "position ra=400, dec=0 is not on the sky")

    def test_init_validates_and_names_each_parameter(self):
        ok = Handler(Params([("ra", "10"), ("dec", "-5"), ("radius", "2"), ("sink", " close ")]))
        self.assertEqual(ok.sink, "close")
        for pairs, expected in (
            ([("dec", "0"), ("radius", "1")], "missing parameter `ra`"),
            ([("ra", "361"), ("dec", "0"), ("radius", "1")], "parameter `ra` = 361 is out of range 0 to 360"),
            ([("ra", "1"), ("dec", "-91"), ("radius", "1")], "parameter `dec` = -91 is out of range -90 to 90"),
            ([("ra", "1"), ("dec", "0"), ("radius", "NaN")], "parameter `radius` = NaN is out of range"),
            ([("ra", "1"), ("dec", "0"), ("radius", "0")], "parameter `radius` must be above 0"),
            ([("ra", "1"), ("dec", "0"), ("radius", "x")], 'parameter `radius` = "x" is not valid'),
            ([("ra", "1"), ("dec", "0"), ("radius", "1"), ("sink", "")], "parameter `sink` is empty"),
            ([("ra", "1"), ("dec", "0"), ("radius", "1"), ("radius_deg", "1")], "unknown parameter `radius_deg`"),
        ):
            with self.assertRaises(ValueError) as caught:
                Handler(Params(pairs))
            self.assertTrue(str(caught.exception).startswith(expected), f"{caught.exception} (wanted {expected})")

    def test_angular_distances(self):
        for args, expected in (
            ((0.0, 0.0, 90.0, 0.0), 90.0),
            ((10.0, 90.0, 200.0, 90.0), 0.0),
            ((0.0, 89.0, 180.0, 89.0), 2.0),
            ((0.0, 0.0, 180.0, 0.0), 180.0),
            ((359.9, 0.0, 0.1, 0.0), 0.2),
        ):
            self.assertAlmostEqual(angular_distance(*args), expected, places=9)

    def test_mission_names_from_schema_and_ivorn(self):
        schema = "https://gcn.nasa.gov/schema/main/gcn/notices/einstein_probe/wxt/alert.schema.json"
        self.assertEqual(schema_mission(schema), "einstein_probe")
        self.assertIsNone(schema_mission("https://example.org/other.json"))
        self.assertEqual(ivorn_stream("ivo://nasa.gsfc.gcn/AMON#ICECUBE_GOLD_Event"), "AMON")
        self.assertEqual(ivorn_stream("ivo://gwnet/LVC#S190425z-1-Initial"), "LVC")
        self.assertIsNone(ivorn_stream("ivo://authority#x"))


if __name__ == "__main__":
    unittest.main()
