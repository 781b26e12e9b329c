// Native tests of the gbm-subthreshold handler (node --test).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { HandlerError, Message, Params, actionsOf, save } from '../../../guest-sdk/js/src/index.js';
import { Handler } from './handler.js';

const SAMPLES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tests', 'data', 'samples');
const SUBTHRESHOLD = 'voevent/fermi_gbm_subthresh_546126856.xml';
const sample = (name) => readFileSync(join(SAMPLES, name));
const handler = (min) => new Handler(new Params(min === undefined ? {} : { min_reliability: min }));
const handle = (h, value) => actionsOf(h.handle(new Message('gcn.classic.voevent.FERMI_GBM_SUBTHRESH', new Uint8Array(value))));

function withReliability(replacement) {
  const xml = sample(SUBTHRESHOLD).toString();
  const original = '<Param name="Reliability"    value="2" unit="dn" />';
  assert.ok(xml.includes(original));
  return Buffer.from(xml.replace(original, replacement));
}

const badRecord = (pattern) => (e) => e instanceof HandlerError && e.kind === 'bad-record' && pattern.test(e.text);

test('saves notice at or above min_reliability', () => {
  assert.deepEqual(handle(handler('2'), sample(SUBTHRESHOLD)), [save()]);
  assert.deepEqual(handle(handler('1'), sample(SUBTHRESHOLD)), [save()]);
});

test('drops notice below min_reliability', () => {
  assert.deepEqual(handle(handler('3'), sample(SUBTHRESHOLD)), []);
  assert.deepEqual(handle(handler(), sample(SUBTHRESHOLD)), []);
  assert.deepEqual(handle(handler(), withReliability('<Param name="Reliability" value="8" unit="dn" />')), [save()]);
});

test('drops other VOEvents, JSON and binary', () => {
  const h = handler('1');
  for (const folder of ['voevent', 'json', 'binary']) {
    for (const name of readdirSync(join(SAMPLES, folder))) {
      if (`${folder}/${name}` !== SUBTHRESHOLD) assert.deepEqual(handle(h, sample(`${folder}/${name}`)), [], name);
    }
  }
});

test('truncated VOEvent is a bad record', () => {
  assert.throws(() => handle(handler('1'), sample(SUBTHRESHOLD).subarray(0, 1500)), badRecord(/^invalid VOEvent: line /));
});

test('notice without numeric Reliability is a bad record', () => {
  assert.throws(() => handle(handler('1'), withReliability('')), badRecord(/^sub-threshold notice ivo:.*no Param named `Reliability`$/));
  assert.throws(
    () => handle(handler('1'), withReliability('<Param name="Reliability" value="high" />')),
    badRecord(/Param `Reliability` = "high" is not a number$/),
  );
});

test('init names the invalid parameter', () => {
  for (const [key, value, expected] of [
    ['min_reliability', 'abc', 'parameter `min_reliability` = "abc" is not valid'],
    ['min_reliability', '11', 'parameter `min_reliability` = 11 is out of range'],
    ['min_reliability', '0', 'parameter `min_reliability` = 0 is out of range'],
    ['min_reliablity', '5', 'unknown parameter `min_reliablity`'],
  ]) {
    assert.throws(() => new Handler(new Params({ [key]: value })), (e) => e.message.startsWith(expected), expected);
  }
});
