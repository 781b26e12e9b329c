// Native tests of the first-notice handler (node --test) with the SDK's
// in-memory state: the decisions on every sample alert in the order of
// tests/data/first-notice-expected.tsv (written by reading the samples), and
// the rules on made-up notices.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Message, Params, forward, payload, save, setLogSink, testing } from '../../../guest-sdk/js/src/index.js';
import { Handler, missionOfPacket, notice } from './handler.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** 2026-01-01T00:00:00Z, the message time of the tests. */
const T0 = 1_767_225_600_000;
const DAY = 86_400_000;

const sample = (path) => new Uint8Array(readFileSync(join(REPO, 'tests', 'data', 'samples', path)));
const handler = (params = {}) => new Handler(new Params(params));
const at = (bytes, millis) => new Message('gcn', bytes, { timestamp: { millis, kind: 'create-time' } });

/** The rows of the expected-decisions file: [path, key, decision]. */
function expected() {
  return readFileSync(join(REPO, 'tests', 'data', 'first-notice-expected.tsv'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => line.split('\t').slice(0, 3));
}

/** The handler's log lines (it logs each decision). */
const logged = [];
before(() => setLogSink((level, text) => logged.push(text)));
after(() => setLogSink((level, text) => console.error(`[${level}] ${text}`)));
beforeEach(() => testing.resetState());

/** One payload through `handle` as the host would, at `millis`: the decision
 * and key it logged, checked against the actions it returned. */
function decide(h, bytes, millis) {
  const actions = testing.handle(h.handle.bind(h), at(bytes, millis));
  const [, decision, key] = logged.pop().split(' ');
  assert.equal(actions.length > 0, ['first', 'smaller', 'retraction'].includes(decision), decision);
  return [decision, key === '-' ? null : key];
}

/** A classic text notice in GCN's layout (no real one is in the test data). */
function text(title, noticeType, trigger, error = null) {
  const lines = [
    `TITLE:            GCN/${title} NOTICE`,
    'NOTICE_DATE:      Sat 18 May 24 22:40:12 UT',
    `NOTICE_TYPE:      ${noticeType}`,
    `TRIGGER_NUM:      ${trigger}`,
  ];
  if (error !== null) lines.push(`GRB_ERROR:        ${error}`);
  lines.push('COMMENTS:         made up for a test');
  return new TextEncoder().encode(`${lines.join('\n')}\n`);
}

test('decides every sample as the expected decisions file says', () => {
  const h = handler();
  const rows = expected();
  assert.equal(rows.length, 52, 'every sample, once');
  const problems = [];
  rows.forEach(([path, key, want], i) => {
    const [got, gotKey] = decide(h, sample(path), T0 + i);
    if (got !== want || (gotKey ?? '-') !== key) problems.push(`${path}: expected ${want} ${key}, got ${got} ${gotKey ?? '-'}`);
  });
  assert.deepEqual(problems, []);
  const s = testing.state();
  assert.equal(s.keys().length, 35, 'the distinct keys of the file');
  assert.equal(new TextDecoder().decode(s.get('fermi-gbm/792135758')), '3.29');
  assert.equal(new TextDecoder().decode(s.get('swift/1227767')), '0.0013');
  assert.equal(s.get('lvk/MS260203s').length, 0);
});

test('GBM JSON notices in the order GCN sent them', () => {
  const h = handler();
  // record_number 1 to 7; radii: none, 8.32, 9.23, 7.15, 1.34, 1.08, 1.
  const order = ['alert', 'flight1', 'flight2', 'flight3', 'ground1', 'ground2', 'final'];
  const decisions = order.map((name, i) => decide(h, sample(`json/fermi_gbm-trigger.${name}.example.json`), T0 + i * 1000)[0]);
  assert.deepEqual(decisions, ['first', 'smaller', 'repeat', 'smaller', 'smaller', 'smaller', 'smaller']);
});

test('events are forgotten ttl_days after their last passing notice', () => {
  const h = handler({ ttl_days: '2' });
  const bat = sample('voevent/swift_bat_grb_pos_1118357.xml');
  const quicklook = sample('voevent/swift_bat_quicklook_pos_1118357.xml');
  assert.equal(decide(h, bat, T0)[0], 'first');
  assert.equal(decide(h, quicklook, T0 + 2 * DAY - 1)[0], 'repeat');
  // A repeat does not extend the memory: two days after the first.
  assert.equal(decide(h, quicklook, T0 + 2 * DAY)[0], 'first');
  assert.equal(testing.state().expiresAt('swift/1118357'), T0 + 4 * DAY);
});

test('passing notices are saved or forwarded to the sink', () => {
  const msg = at(sample('voevent/swift_bat_grb_pos_1118357.xml'), T0);
  const h = handler();
  assert.deepEqual(testing.handle(h.handle.bind(h), msg), [save()]);
  assert.deepEqual(testing.handle(h.handle.bind(h), msg), []);
  testing.resetState();
  const f = handler({ sink: ' firsts ' });
  assert.deepEqual(testing.handle(f.handle.bind(f), msg), [forward('firsts')]);
});

test('bad parameters are refused', () => {
  for (const [params, want] of [
    [{ ttl_days: '0' }, 'parameter `ttl_days` = 0 is out of range'],
    [{ ttl_days: 'x' }, 'parameter `ttl_days` = "x" is not valid'],
    [{ sink: '' }, 'parameter `sink` is empty'],
    [{ ttl: '1' }, 'unknown parameter `ttl`'],
  ]) {
    assert.throws(() => handler(params), (e) => e.message.startsWith(want), want);
  }
});

test('classic text notices are keyed by title and trigger num', () => {
  const cases = [
    [text('SWIFT', 'Swift-BAT GRB Position', '1227767,   Seg_Num: 0', '3.00 [arcmin radius, statistical only]'), ['swift/1227767', 0.05, false]],
    [text('SWIFT', 'Swift-XRT Position', '1227767,   Seg_Num: 0', '36.0 [arcsec radius, 90% containment]'), ['swift/1227767', 0.01, false]],
    [text('FERMI', 'Fermi-GBM Ground Position', '737763760', '7.60 [deg radius, statistical only]'), ['fermi-gbm/737763760', 7.6, false]],
    [text('FERMI', 'Fermi-GBM Sub-Threshold', '737763760', '0.00 [deg radius]'), ['fermi-gbm-subthreshold/737763760', null, false]],
    [text('FERMI', 'Fermi-LAT Offline', '793795080', '0.1 [constructor]'), ['fermi-lat/793795080', null, false]],
    [text('LVC', 'LVC Retraction', 'S240511x'), ['lvk/S240511x', null, true]],
    [text('SWIFT', 'Swift-BAT GRB Position', ''), null],
    [new TextEncoder().encode('TITLE: GCN CIRCULAR\nNUMBER: 1\n'), null],
  ];
  for (const [bytes, want] of cases) {
    assert.equal(payload.detect(bytes), payload.Format.CLASSIC_TEXT);
    const got = notice(bytes);
    assert.deepEqual(got && [got.key, got.errorRadius, got.retraction], want, new TextDecoder().decode(bytes));
  }
});

test('a better localisation in another format counts for the same event', () => {
  const h = handler();
  const bat = text('SWIFT', 'Swift-BAT GRB Position', '1227767,   Seg_Num: 0', '3.00 [arcmin radius]');
  assert.deepEqual(decide(h, bat, T0), ['first', 'swift/1227767']);
  assert.equal(decide(h, sample('binary/SWIFT_BAT_GRB_POS_ACK.bin'), T0 + 1)[0], 'repeat');
  assert.equal(decide(h, sample('binary/SWIFT_XRT_POSITION.bin'), T0 + 2)[0], 'smaller');
});

test('a retraction of a seen event passes and keeps its record', () => {
  const h = handler();
  const [initial, retraction] = [sample('binary/LVC_INITIAL.bin'), sample('binary/LVC_RETRACTION.bin')];
  assert.equal(decide(h, initial, T0)[0], 'first');
  assert.equal(decide(h, retraction, T0 + 1)[0], 'retraction');
  assert.equal(decide(h, retraction, T0 + 2)[0], 'retraction');
  assert.equal(decide(h, initial, T0 + 3)[0], 'repeat');
});

test('missions of notice types', () => {
  for (const [type, mission] of [
    [53, 'integral'], [61, 'swift'], [97, 'swift'], [110, 'fermi-gbm'], [128, 'fermi-lat'],
    [131, 'fermi-gbm-subthreshold'], [150, 'lvk'], [164, 'lvk'], [158, 'amon'], [176, 'icecube'],
    [175, 'gcn-175'], [-1, 'gcn--1'],
  ]) {
    assert.equal(missionOfPacket(type), mission, String(type));
  }
});
