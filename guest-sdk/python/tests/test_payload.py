"""The payload helpers read the sample alerts the way the Rust SDK does
(the cases mirror guest-sdk/src/payload*.rs)."""

import os
import unittest

from alerthost import payload
from alerthost.payload import ClassicBinary, Json, PayloadError, Position, VoEvent, iso_time_to_unix_millis

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data", "samples")


def sample(relative):
    with open(os.path.join(SAMPLES, relative), "rb") as f:
        return f.read()


def samples_in(folder):
    directory = os.path.join(SAMPLES, folder)
    names = sorted(os.listdir(directory))
    assert names, directory
    return [(name, sample(os.path.join(folder, name))) for name in names]


class DetectTest(unittest.TestCase):
    def test_detects_every_sample_by_content(self):
        for folder, expected in (("voevent", payload.VOEVENT), ("json", payload.JSON), ("binary", payload.CLASSIC_BINARY)):
            for name, data in samples_in(folder):
                self.assertEqual(payload.detect(data), expected, f"{folder}/{name}")

    def test_detects_prologs_prefixes_and_look_alikes(self):
        cases = [
            (b"\xef\xbb\xbf\n <VOEvent ivorn='x'/>", payload.VOEVENT),
            (b"<?xml version='1.0'?><!-- c --><!DOCTYPE v><v:VOEvent>", payload.VOEVENT),
            (b"<?xml version='1.0'?><html></html>", payload.UNKNOWN),
            (b"<?xml version='1.0'", payload.UNKNOWN),
            (b" [1, 2]", payload.JSON),
            (b'{"ra": ', payload.UNKNOWN),
            (b'{"ra": NaN}', payload.UNKNOWN),
            (b"TITLE:           GCN/FERMI NOTICE\nNOTICE_DATE:     Fri 17 May 24\n", payload.CLASSIC_TEXT),
            (b"hello world", payload.UNKNOWN),
            (bytes(160), payload.CLASSIC_BINARY),
            (bytes(159), payload.UNKNOWN),
            (b" " * 160, payload.UNKNOWN),
            (b"", payload.UNKNOWN),
        ]
        for data, expected in cases:
            self.assertEqual(payload.detect(data), expected, repr(data))

    def test_iso_times_become_unix_millis(self):
        cases = [
            ("1970-01-01T00:00:00", 0),
            ("2018-04-22T21:54:11.05", 1_524_434_051_050),
            ("2026-02-07T00:55:47.933189Z", 1_770_425_747_933),
            ("2024-02-29 12:00:00Z", 1_709_208_000_000),
            ("2024-05-01T10:00:00+02:00", 1_714_550_400_000),
            ("2024-05-01T10:00:00-0130", 1_714_563_000_000),
            ("1969-12-31T23:59:59.999", -1),
            ("2023-02-29T00:00:00", None),
            ("2024-05-01T24:00:00", None),
            ("2024-05-01T10:00:60", None),
            ("2024-05-01T10:00:00.", None),
            ("2024-05-01", None),
            ("2024/05/01T10:00:00", None),
            ("not a time", None),
        ]
        for text, expected in cases:
            self.assertEqual(iso_time_to_unix_millis(text), expected, text)

    def test_payload_errors_name_the_format(self):
        err = PayloadError(payload.VOEVENT, "no ivorn")
        self.assertEqual(str(err), "invalid VOEvent: no ivorn")
        self.assertEqual((err.format, err.detail), (payload.VOEVENT, "no ivorn"))


class VoEventTest(unittest.TestCase):
    def test_reads_gbm_subthreshold_params_groups_and_position(self):
        event = VoEvent.parse(sample("voevent/fermi_gbm_subthresh_546126856.xml"))
        self.assertEqual(event.ivorn, "ivo://nasa.gsfc.gcn/Fermi#GBM_SubThresh_2018-04-22T21:54:11.00_546126856_0-001")
        self.assertEqual(event.role, "test")
        self.assertEqual(event.version, "2.0")
        self.assertEqual(event.date, "2018-04-23T00:30:42")
        self.assertEqual(event.packet_type(), 131)
        self.assertEqual(event.param("Reliability"), "2")
        self.assertEqual(event.param_float("Reliability"), 2.0)
        reliability = next(p for p in event.params if p.name == "Reliability")
        self.assertEqual(reliability.unit, "dn")
        self.assertEqual(event.param_float("Trans_Duration"), 1.407)
        self.assertEqual(event.param("Trigger_ID"), "0x0")
        self.assertEqual(event.group_param("Trigger_ID", "Test_Submission"), "false")
        sun_ra = next(p for p in event.params if p.name == "Sun_RA")
        self.assertEqual((sun_ra.group, sun_ra.ucd), ("Obs_Support_Info", "pos.eq.ra"))
        self.assertEqual(len(event.params), 34)
        self.assertEqual(event.iso_time, "2018-04-22T21:54:11.05")
        self.assertEqual(event.time_unix_millis(), 1_524_434_051_050)
        self.assertEqual(event.position, Position(262.97, 19.7399, 22.1299))

    def test_reads_swift_bat_position(self):
        event = VoEvent.parse(sample("voevent/swift_bat_grb_pos_1118357.xml"))
        self.assertEqual(event.role, "observation")
        self.assertEqual(event.packet_type(), 61)
        self.assertEqual(event.param("TrigID"), "1118357")
        self.assertEqual(event.position, Position(225.0208, -69.4969, 0.05))
        self.assertEqual(event.iso_time, "2022-07-30T15:48:54.89")

    def test_reads_lvk_notice_without_position(self):
        event = VoEvent.parse(sample("voevent/lvc_preliminary_MS260207a-1.xml"))
        self.assertEqual(event.role, "test")
        self.assertEqual(event.packet_type(), 150)
        self.assertEqual(event.param("GraceID"), "MS260207a")
        self.assertEqual(len(event.group_param("Classification", "BNS")), 18)
        self.assertEqual(event.param_float("FAR"), 5.176954877338635e-16)
        self.assertEqual(event.date, "2026-02-07T00:57:16Z")
        self.assertEqual(event.time_unix_millis(), 1_770_425_747_933)
        self.assertIsNone(event.position)

    def test_parses_every_sample_with_ivorn_time_and_packet_type(self):
        for name, data in samples_in("voevent"):
            event = VoEvent.parse(data)
            self.assertTrue(event.ivorn.startswith("ivo://"), name)
            self.assertIsNotNone(event.time_unix_millis(), name)
            self.assertIsNotNone(event.packet_type(), name)
            self.assertEqual(event.position is None, name.startswith("lvc_"), name)

    def test_reads_value_children_entities_and_plain_root(self):
        xml = b"""<VOEvent ivorn="ivo://x/y#1&amp;2">
          <What>
            <Param name="a"><Value>1.5</Value></Param>
            <Param name="b" value="x &lt; y"/>
            <Param name="c" value="&#x41;"/>
          </What>
          <WhereWhen><ObsDataLocation><ObservationLocation>
            <AstroCoords coord_system_id="UTC-GAL-GEO">
              <Position2D unit="deg"><Value2><C1>1</C1><C2>2</C2></Value2></Position2D>
            </AstroCoords>
          </ObservationLocation></ObsDataLocation></WhereWhen>
        </VOEvent>"""
        event = VoEvent.parse(xml)
        self.assertEqual(event.ivorn, "ivo://x/y#1&2")
        self.assertEqual(event.role, "observation")
        self.assertEqual(event.param_float("a"), 1.5)
        self.assertEqual(event.param("b"), "x < y")
        self.assertEqual(event.param("c"), "A")
        self.assertIsNone(event.position)

    def test_param_errors_say_missing_or_not_a_number(self):
        event = VoEvent.parse(b'<VOEvent ivorn="i"><What><Param name="x" value="high"/></What></VOEvent>')
        with self.assertRaises(PayloadError) as missing:
            event.param_float("y")
        self.assertEqual(str(missing.exception), "invalid VOEvent: no Param named `y`")
        with self.assertRaises(PayloadError) as nan:
            event.param_float("x")
        self.assertEqual(str(nan.exception), 'invalid VOEvent: Param `x` = "high" is not a number')

    def test_malformed_documents_fail_with_line_and_reason(self):
        subthreshold = sample("voevent/fermi_gbm_subthresh_546126856.xml")
        cut = subthreshold.index(b"<WhereWhen>")
        cases = [
            (subthreshold[:cut], "document ends inside <VOEvent>"),
            (b"<VOEvent ivorn='i'>\n<What>\n</Who>\n</VOEvent>", "line 3: malformed XML"),
            (b"<html/>", "root element is <html>, not <VOEvent>"),
            (b"<VOEvent role='test'/>", "<VOEvent> has no ivorn attribute"),
            (b"<VOEvent ivorn='i'/><VOEvent ivorn='j'/>", "after the end of the root"),
            (b"<VOEvent ivorn='i'>\xff</VOEvent>", "not UTF-8 at byte 19"),
            (b"  ", "no root element"),
        ]
        for data, expected in cases:
            with self.assertRaises(PayloadError) as caught:
                VoEvent.parse(data)
            self.assertEqual(caught.exception.format, payload.VOEVENT)
            self.assertIn(expected, caught.exception.detail)

    def test_bad_coordinates_are_errors(self):
        xml = b"""<VOEvent ivorn="i"><WhereWhen><Position2D unit="deg">
            <Value2><C1>abc</C1><C2>1</C2></Value2></Position2D></WhereWhen></VOEvent>"""
        with self.assertRaises(PayloadError) as caught:
            VoEvent.parse(xml)
        self.assertEqual(caught.exception.detail, 'line 2: <C1> "abc" is not a number')


class JsonTest(unittest.TestCase):
    def test_reads_einstein_probe_alert(self):
        doc = Json.parse(sample("json/einstein_probe_wxt-alert-01709259773.json"))
        self.assertEqual(doc.float("ra"), 184.664)
        self.assertEqual(doc.float("dec"), -6.146)
        self.assertEqual(doc.float("ra_dec_error"), 0.05174976)
        self.assertEqual(doc.str("instrument"), "WXT")
        self.assertIsNone(doc.str("mission"))
        self.assertEqual(doc.str("id.0"), "01709259773")
        self.assertEqual(doc.float("image_energy_range.1"), 4.0)
        self.assertEqual(iso_time_to_unix_millis(doc.str("trigger_time")), 1_775_735_111_949)

    def test_reads_nested_igwn_alert(self):
        doc = Json.parse(sample("json/igwn_gwalert-S230518h-initial.json"))
        self.assertEqual(doc.str("superevent_id"), "S230518h")
        self.assertEqual(doc.str("event.pipeline"), "pycbc")
        self.assertEqual(doc.float("event.classification.NSBH"), 0.8642645059209272)
        self.assertEqual(doc.str("event.instruments.1"), "L1")
        self.assertIsNone(doc.get("event.duration", "absent"))
        self.assertIsNone(doc.float("ra"))

    def test_paths_that_do_not_match_are_missing(self):
        doc = Json({"a": [{"b": "x"}], "n": "1.5", "t": True})
        self.assertEqual(doc.str("a.0.b"), "x")
        self.assertIs(doc.get(""), doc.value)
        for path in ("a.1.b", "a.x", "a.0.b.c", "missing", "a..b"):
            self.assertEqual(doc.get(path, "absent"), "absent", path)
        self.assertIsNone(doc.float("n"))
        self.assertIsNone(doc.float("t"))
        self.assertIsNone(doc.str("a"))

    def test_parse_errors_name_the_format(self):
        with self.assertRaises(PayloadError) as caught:
            Json.parse(b'{\n  "ra": 12,,\n}')
        self.assertEqual(caught.exception.format, payload.JSON)
        self.assertIn("line 2", caught.exception.detail)


class ClassicTest(unittest.TestCase):
    def test_reads_swift_bat_packet(self):
        packet = ClassicBinary.parse(sample("binary/SWIFT_BAT_GRB_POS_ACK.bin"))
        self.assertEqual(packet.packet_type, 61)
        self.assertEqual(packet.trigger_number, 1_227_767)
        self.assertEqual(packet.burst_tjd, 20441)
        self.assertEqual(packet.burst_sod, 65213.22)
        self.assertEqual(packet.burst_unix_millis, iso_time_to_unix_millis("2024-05-11T18:06:53.22Z"))
        self.assertEqual((packet.word(7), packet.word(8), packet.word(40)), (3_366_645, 85_135, None))

    def test_reads_type_and_trigger_of_every_packet(self):
        expected = {
            "FERMI_GBM_ALERT.bin": (110, 736_861_702),
            "FERMI_GBM_SUBTHRESH.bin": (131, 737_763_760),
            "LVC_RETRACTION.bin": (164, 240_511),
            "SWIFT_UVOT_POS.bin": (81, 1_231_488),
        }
        for name, data in samples_in("binary"):
            packet = ClassicBinary.parse(data)
            if name in expected:
                self.assertEqual((packet.packet_type, packet.trigger_number), expected[name], name)
            self.assertTrue(20310 <= packet.burst_tjd <= 20675, name)

    def test_packets_of_other_sizes_are_refused(self):
        with self.assertRaises(PayloadError) as caught:
            ClassicBinary.parse(bytes(161))
        self.assertEqual(str(caught.exception), "invalid classic binary packet: a packet is 160 bytes, this payload is 161")

    NOTICE = (
        "TITLE:            GCN/FERMI NOTICE\r\n"
        "NOTICE_DATE:      Sat 18 May 24 22:40:12 UT\n"
        "NOTICE_TYPE:      Fermi-GBM Sub-Threshold\n"
        "TRIGGER_NUM:      737763760\n"
        "GRB_RA:           217.6800d {+14h 30m 43s} (J2000),\n"
        "                  217.9000d {+14h 31m 36s} (current),\n"
        "                  217.1000d {+14h 28m 24s} (1950)\n"
        "GRB_DATE:         20448 TJD;   139 DOY;   24/05/18\n"
        "\n"
        "COMMENTS:         Fermi-GBM Sub-Threshold Notice.\n"
        "COMMENTS:         Reliability: 2\n"
    )

    def test_reads_text_notice_pairs_with_continuations(self):
        data = self.NOTICE.encode()
        self.assertEqual(payload.detect(data), payload.CLASSIC_TEXT)
        self.assertEqual(
            payload.classic_text_pairs(data),
            [
                ("TITLE", "GCN/FERMI NOTICE"),
                ("NOTICE_DATE", "Sat 18 May 24 22:40:12 UT"),
                ("NOTICE_TYPE", "Fermi-GBM Sub-Threshold"),
                ("TRIGGER_NUM", "737763760"),
                (
                    "GRB_RA",
                    "217.6800d {+14h 30m 43s} (J2000), 217.9000d {+14h 31m 36s} (current), "
                    "217.1000d {+14h 28m 24s} (1950)",
                ),
                ("GRB_DATE", "20448 TJD;   139 DOY;   24/05/18"),
                ("COMMENTS", "Fermi-GBM Sub-Threshold Notice."),
                ("COMMENTS", "Reliability: 2"),
            ],
        )

    def test_text_before_the_first_key_is_skipped(self):
        pairs = payload.classic_text_pairs(b"  stray\nKEY:\n  more\nnot a key: x\n")
        self.assertEqual(pairs, [("KEY", "more not a key: x")])


if __name__ == "__main__":
    unittest.main()


class TrimTest(unittest.TestCase):
    def test_trims_what_rust_trims(self):
        self.assertEqual(payload.trim("\u00a0\u0085 x y\u3000\t"), "x y")
        # Not whitespace to Rust, though Python's str.strip() removes them.
        self.assertEqual(payload.trim("\x1c x \x1f"), "\x1c x \x1f")
        self.assertEqual(payload.trim("\ufeffx"), "\ufeffx")
