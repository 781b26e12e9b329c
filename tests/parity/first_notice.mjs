// The JavaScript first-notice example's decisions, under Node with the SDK's
// in-memory state: one line per message file given, in the order given,
// `DECISION<TAB>KEY` (`-` when none). The message times are 1 ms apart from
// 2026-01-01T00:00:00Z. tests/parity.rs compares the output with the
// expected decisions and with first_notice.py.

import { readFileSync } from 'node:fs';

import { Message, Params, testing } from '../../guest-sdk/js/src/index.js';
import { Handler } from '../../examples/js/first-notice/handler.js';

const T0 = 1_767_225_600_000;

const h = new Handler(new Params());
testing.resetState();
const lines = process.argv.slice(2).map((path, i) => {
  const msg = new Message('gcn', readFileSync(path), { timestamp: { millis: T0 + i, kind: 'create-time' } });
  let decision;
  // `decide` is what `handle` runs; its result is what `handle` logs.
  testing.handle((m) => {
    decision = h.decide(m.value);
  }, msg);
  return `${decision[0]}\t${decision[1] ?? '-'}`;
});
console.log(lines.join('\n'));
