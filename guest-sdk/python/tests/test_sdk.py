"""Plain types, parameters and the handler conventions of the Python SDK."""

import types
import unittest

import alerthost
from alerthost import Forward, Message, Params, Save


class ParamsTest(unittest.TestCase):
    def test_last_value_wins_and_errors_name_the_key(self):
        params = Params([("x", "1"), ("x", "2.5"), ("bad", "abc"), ("n", " 7 ")])
        self.assertEqual(params.float("x"), 2.5)
        self.assertEqual(params.float("absent", 7.0), 7.0)
        self.assertEqual(params.int("n"), 7)
        with self.assertRaisesRegex(ValueError, 'parameter `bad` = "abc" is not valid'):
            params.float("bad")
        with self.assertRaisesRegex(ValueError, "^missing parameter `nope`$"):
            params.require("nope")
        with self.assertRaisesRegex(ValueError, "not an integer"):
            Params({"i": "1_0"}).int("i")
        self.assertEqual(Params({"a": "b"}).keys(), ["a"])


class ActionsTest(unittest.TestCase):
    def test_builders_take_bytes_or_text(self):
        self.assertEqual(alerthost.save(), Save())
        self.assertEqual(alerthost.save("a.xml", "x"), Save(name="a.xml", value=b"x"))
        fwd = alerthost.forward("out", value="v", key=b"k", headers=[("h", "1")])
        self.assertEqual(fwd, Forward(sink="out", key=b"k", value=b"v", headers=[alerthost.Header("h", b"1")]))

    def test_handle_may_return_none_one_action_or_a_list(self):
        self.assertEqual(alerthost.actions_of(None), [])
        self.assertEqual(alerthost.actions_of(Save()), [Save()])
        self.assertEqual(alerthost.actions_of((Save(), Forward("x"))), [Save(), Forward("x")])
        with self.assertRaises(TypeError):
            alerthost.actions_of("save")
        with self.assertRaises(TypeError):
            alerthost.actions_of([Save(), 3])

    def test_message_defaults_and_headers(self):
        msg = Message("t", "payload", headers=[alerthost.Header("h", "v"), alerthost.Header("e")])
        self.assertEqual((msg.value, msg.partition, msg.offset, msg.key), (b"payload", 0, 0, None))
        self.assertEqual(msg.header("h"), b"v")
        self.assertIsNone(msg.header("e"))
        self.assertIsNone(msg.header("missing"))


class ConventionsTest(unittest.TestCase):
    def test_function_handler_with_init(self):
        seen = []
        module = types.ModuleType("fn_handler")
        module.init = lambda params: seen.append(params.require("k"))
        module.handle = lambda msg: alerthost.save(msg.topic)
        self.assertEqual(alerthost.run(module, Message("t", b""), {"k": "v"}), [Save(name="t")])
        self.assertEqual(seen, ["v"])

    def test_class_handler(self):
        module = types.ModuleType("class_handler")

        class Handler:
            def __init__(self, params):
                self.sink = params.get("sink", "out")

            def handle(self, msg):
                if msg.value == b"bad":
                    raise alerthost.BadRecord("bad value")
                return [alerthost.forward(self.sink)]

        module.Handler = Handler
        self.assertEqual(alerthost.run(module, Message("t", b"x")), [Forward("out")])
        with self.assertRaises(alerthost.BadRecord) as caught:
            alerthost.run(module, Message("t", b"bad"))
        self.assertEqual(str(caught.exception), "bad-record: bad value")

    def test_module_without_handler_is_refused(self):
        with self.assertRaisesRegex(TypeError, "neither a class Handler nor a function handle"):
            alerthost.load(types.ModuleType("empty"))


if __name__ == "__main__":
    unittest.main()
