// Native tests of the handler: `node --test`.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Message, run, save } from './alerthost/index.js';
import * as handler from './handler.js';

// A Swift BAT position notice (VOEvent), as GCN sends it.
const SAMPLE = readFileSync(new URL('./samples/example.xml', import.meta.url));

test('saves a VOEvent by default', () => {
  const msg = new Message('gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK', SAMPLE);
  assert.deepEqual(run(handler, msg), [save()]);
});

test('drops formats not asked for', () => {
  assert.deepEqual(run(handler, new Message('t', SAMPLE), { formats: 'json' }), []);
  assert.deepEqual(run(handler, new Message('t', new Uint8Array(160)), { formats: 'voevent,json' }), []);
});

test('refuses unknown formats', () => {
  assert.throws(() => run(handler, new Message('t', SAMPLE), { formats: 'xml' }), /unknown format `xml`/);
});
