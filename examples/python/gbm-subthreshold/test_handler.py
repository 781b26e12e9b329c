"""Native tests of the gbm-subthreshold handler (python -m unittest)."""

import os
import sys
import unittest

# The SDK of this repository, so `python3 -m unittest` works from here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "guest-sdk", "python"))

import alerthost  # noqa: E402
from alerthost import Message, Params  # noqa: E402

from handler import Handler

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "data", "samples")
SUBTHRESHOLD = "voevent/fermi_gbm_subthresh_546126856.xml"


def sample(name):
    with open(os.path.join(SAMPLES, name), "rb") as f:
        return f.read()


def handler(min_reliability=None):
    return Handler(Params({} if min_reliability is None else {"min_reliability": min_reliability}))


def handle(h, value):
    return alerthost.actions_of(h.handle(Message("gcn.classic.voevent.FERMI_GBM_SUBTHRESH", value)))


def with_reliability(replacement):
    xml = sample(SUBTHRESHOLD).decode()
    original = '<Param name="Reliability"    value="2" unit="dn" />'
    assert original in xml
    return xml.replace(original, replacement).encode()


class GbmSubthresholdTest(unittest.TestCase):
    def test_saves_notice_at_or_above_min_reliability(self):
        self.assertEqual(handle(handler("2"), sample(SUBTHRESHOLD)), [alerthost.save()])
        self.assertEqual(handle(handler("1"), sample(SUBTHRESHOLD)), [alerthost.save()])

    def test_drops_notice_below_min_reliability(self):
        self.assertEqual(handle(handler("3"), sample(SUBTHRESHOLD)), [])
        default = handler()
        self.assertEqual(handle(default, sample(SUBTHRESHOLD)), [])
        high = with_reliability('<Param name="Reliability" value="8" unit="dn" />')
        self.assertEqual(handle(default, high), [alerthost.save()])

    def test_drops_other_voevents_json_and_binary(self):
        h = handler("1")
        for folder in ("voevent", "json", "binary"):
            for name in os.listdir(os.path.join(SAMPLES, folder)):
                relative = f"{folder}/{name}"
                if relative != SUBTHRESHOLD:
                    self.assertEqual(handle(h, sample(relative)), [], relative)

    def test_truncated_voevent_is_a_bad_record(self):
        with self.assertRaises(alerthost.BadRecord) as caught:
            handle(handler("1"), sample(SUBTHRESHOLD)[:1500])
        self.assertTrue(caught.exception.text.startswith("invalid VOEvent: line "), caught.exception.text)

    def test_notice_without_numeric_reliability_is_a_bad_record(self):
        for replacement, detail in (
            ("", "no Param named `Reliability`"),
            ('<Param name="Reliability" value="high" />', 'Param `Reliability` = "high" is not a number'),
        ):
            with self.assertRaises(alerthost.BadRecord) as caught:
                handle(handler("1"), with_reliability(replacement))
            text = caught.exception.text
            self.assertTrue(text.startswith("sub-threshold notice ivo://nasa.gsfc.gcn/Fermi#GBM_SubThresh_"), text)
            self.assertTrue(text.endswith(detail), text)

    def test_init_names_the_invalid_parameter(self):
        for key, value, expected in (
            ("min_reliability", "abc", 'parameter `min_reliability` = "abc" is not valid'),
            ("min_reliability", "11", "parameter `min_reliability` = 11 is out of range"),
            ("min_reliability", "0", "parameter `min_reliability` = 0 is out of range"),
            ("min_reliablity", "5", "unknown parameter `min_reliablity`"),
        ):
            with self.assertRaises(ValueError) as caught:
                Handler(Params({key: value}))
            self.assertTrue(str(caught.exception).startswith(expected), str(caught.exception))


if __name__ == "__main__":
    unittest.main()
