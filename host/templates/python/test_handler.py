"""Native tests of the handler: ``python3 -m unittest``."""

import os
import unittest

import alerthost

import handler

# A Swift BAT position notice (VOEvent), as GCN sends it.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples", "example.xml"), "rb") as f:
    SAMPLE = f.read()


class HandlerTest(unittest.TestCase):
    def test_saves_a_voevent_by_default(self):
        msg = alerthost.Message("gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK", SAMPLE)
        self.assertEqual(alerthost.run(handler, msg), [alerthost.save()])

    def test_drops_formats_not_asked_for(self):
        self.assertEqual(alerthost.run(handler, alerthost.Message("t", SAMPLE), {"formats": "json"}), [])
        self.assertEqual(alerthost.run(handler, alerthost.Message("t", bytes(160))), [])

    def test_refuses_unknown_formats(self):
        with self.assertRaisesRegex(ValueError, "unknown format `xml`"):
            alerthost.run(handler, alerthost.Message("t", SAMPLE), {"formats": "xml"})


if __name__ == "__main__":
    unittest.main()
