// Native tests of the sky-region handler (node --test).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { HandlerError, Message, Params, actionsOf } from '../../../guest-sdk/js/src/index.js';
import { Handler, angularDistance, ivornStream, schemaMission } from './handler.js';

const SAMPLES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tests', 'data', 'samples');
const sample = (name) => new Uint8Array(readFileSync(join(SAMPLES, name)));
const cone = (ra, dec, radius) => new Handler(new Params({ ra, dec, radius }));

/** The summary forwarded for `value`, or `null` when it is dropped. */
function summary(region, value) {
  const actions = actionsOf(region.handle(new Message('gcn.notices.any', value, { partition: 2, offset: 77 })));
  if (actions.length === 0) return null;
  assert.equal(actions.length, 1);
  const [action] = actions;
  assert.equal(action.kind, 'forward');
  assert.equal(action.sink, 'summaries');
  assert.equal(action.key, null);
  assert.equal(action.headers, null);
  return JSON.parse(new TextDecoder().decode(action.value));
}

test('forwards Einstein Probe JSON alert inside the cone', () => {
  assert.deepEqual(summary(cone('184.0', '-6.0', '1'), sample('json/einstein_probe_wxt-alert-01709259773.json')), {
    mission: 'einstein_probe',
    time: '2026-04-09T11:45:11.949Z',
    ra: 184.664,
    dec: -6.146,
    error: 0.05174976,
    topic: 'gcn.notices.any',
    partition: 2,
    offset: 77,
  });
});

test('forwards Swift VOEvent inside the cone', () => {
  assert.deepEqual(summary(cone('225', '-69.5', '0.1'), sample('voevent/swift_bat_grb_pos_1118357.xml')), {
    mission: 'SWIFT',
    time: '2022-07-30T15:48:54.89',
    ra: 225.0208,
    dec: -69.4969,
    error: 0.05,
    topic: 'gcn.notices.any',
    partition: 2,
    offset: 77,
  });
});

test('drops alerts outside the cone or without a position', () => {
  assert.equal(summary(cone('225', '-69.6', '0.1'), sample('voevent/swift_bat_grb_pos_1118357.xml')), null);
  assert.equal(summary(cone('4.664', '6.146', '90'), sample('json/einstein_probe_wxt-alert-01709259773.json')), null);
  const region = cone('0', '0', '1');
  for (const name of [
    'voevent/fermi_gbm_alert_792135758.xml',
    'voevent/lvc_preliminary_MS260207a-1.xml',
    'json/igwn_gwalert-S230518h-initial.json',
    'json/fermi_gbm-trigger.alert.example.json',
    'json/swift_bat-Guano.Retraction.example.json',
    'binary/SWIFT_BAT_GRB_POS_ACK.bin',
  ]) {
    assert.equal(summary(region, sample(name)), null, name);
  }
  assert.equal(summary(region, 'TITLE: GCN NOTICE\n'), null);
});

test('forwards every located sample when the cone is the whole sky', () => {
  const region = cone('0', '0', '180');
  const forwarded = [];
  for (const folder of ['voevent', 'json', 'binary']) {
    for (const name of readdirSync(join(SAMPLES, folder))) {
      const got = summary(region, sample(`${folder}/${name}`));
      if (got !== null) {
        assert.equal(typeof got.mission, 'string', name);
        assert.equal(typeof got.time, 'string', name);
        forwarded.push(name);
      }
    }
  }
  assert.equal(forwarded.length, 26, forwarded.join(', '));
});

test('cone wraps around RA 0', () => {
  const got = summary(cone('359.5', '0', '1'), JSON.stringify({ ra: 0.2, dec: 0.5, mission: 'Test' }));
  assert.equal(got.mission, 'Test');
  assert.equal(got.error, null);
});

test('bad VOEvent and off-sky position are bad records', () => {
  const region = cone('0', '0', '180');
  const badRecord = (text) => (e) => e instanceof HandlerError && e.kind === 'bad-record' && e.text === text;
  assert.throws(() => region.handle(new Message('t', "<voe:VOEvent ivorn='x'><What>")), badRecord('invalid VOEvent: line 1: document ends inside <What>'));
  assert.throws(() => region.handle(new Message('t', '{"ra": 400, "dec": 0}')), badRecord('position ra=400, dec=0 is not on the sky'));
});

test('init validates and names each parameter', () => {
  assert.equal(new Handler(new Params([['ra', '10'], ['dec', '-5'], ['radius', '2'], ['sink', ' close ']])).sink, 'close');
  for (const [pairs, expected] of [
    [[['dec', '0'], ['radius', '1']], 'missing parameter `ra`'],
    [[['ra', '361'], ['dec', '0'], ['radius', '1']], 'parameter `ra` = 361 is out of range 0 to 360'],
    [[['ra', '1'], ['dec', '-91'], ['radius', '1']], 'parameter `dec` = -91 is out of range -90 to 90'],
    [[['ra', '1'], ['dec', '0'], ['radius', 'NaN']], 'parameter `radius` = NaN is out of range'],
    [[['ra', '1'], ['dec', '0'], ['radius', '0']], 'parameter `radius` must be above 0'],
    [[['ra', '1'], ['dec', '0'], ['radius', 'x']], 'parameter `radius` = "x" is not valid'],
    [[['ra', '1'], ['dec', '0'], ['radius', '1'], ['sink', '']], 'parameter `sink` is empty'],
    [[['ra', '1'], ['dec', '0'], ['radius', '1'], ['radius_deg', '1']], 'unknown parameter `radius_deg`'],
  ]) {
    assert.throws(() => new Handler(new Params(pairs)), (e) => e.message.startsWith(expected), expected);
  }
});

test('angular distances, mission names', () => {
  const close = (a, b) => Math.abs(a - b) < 1e-9;
  assert.ok(close(angularDistance(0, 0, 90, 0), 90));
  assert.ok(close(angularDistance(10, 90, 200, 90), 0));
  assert.ok(close(angularDistance(0, 89, 180, 89), 2));
  assert.ok(close(angularDistance(0, 0, 180, 0), 180));
  assert.ok(close(angularDistance(359.9, 0, 0.1, 0), 0.2));
  assert.equal(schemaMission('https://gcn.nasa.gov/schema/main/gcn/notices/einstein_probe/wxt/alert.schema.json'), 'einstein_probe');
  assert.equal(schemaMission('https://example.org/other.json'), null);
  assert.equal(ivornStream('ivo://nasa.gsfc.gcn/AMON#ICECUBE_GOLD_Event'), 'AMON');
  assert.equal(ivornStream('ivo://authority#x'), null);
});
