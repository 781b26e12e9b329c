// Plain types, parameters and the handler conventions of the JavaScript SDK.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BadRecord, HandlerError, Message, Params, actionsOf, forward, load, run, save } from '../src/index.js';

test('params: last value wins and errors name the key', () => {
  const params = new Params([['x', '1'], ['x', '2.5'], ['bad', 'abc'], ['n', ' 7 ']]);
  assert.equal(params.number('x'), 2.5);
  assert.equal(params.number('absent', 7), 7);
  assert.equal(params.integer('n'), 7);
  assert.throws(() => params.number('bad'), { message: /^parameter `bad` = "abc" is not valid/ });
  assert.throws(() => params.require('nope'), { message: 'missing parameter `nope`' });
  assert.throws(() => new Params({ i: '0x10' }).number('i'), /not valid/);
  assert.deepEqual(new Params({ a: 'b' }).keys(), ['a']);
});

test('action builders take bytes or text', () => {
  assert.deepEqual(save(), { kind: 'save', name: null, value: null });
  assert.deepEqual(save({ name: 'a.xml', value: 'x' }).value, new TextEncoder().encode('x'));
  const fwd = forward('out', { value: 'v', key: 'k', headers: [['h', '1']] });
  assert.equal(fwd.sink, 'out');
  assert.deepEqual(fwd.headers, [{ name: 'h', value: new TextEncoder().encode('1') }]);
});

test('handle may return nothing, one action or an array', () => {
  assert.deepEqual(actionsOf(undefined), []);
  assert.deepEqual(actionsOf(save()), [save()]);
  assert.deepEqual(actionsOf([save(), forward('x')]), [save(), forward('x')]);
  assert.throws(() => actionsOf('save'), TypeError);
  assert.throws(() => actionsOf([save(), 3]), TypeError);
});

test('message defaults and headers', () => {
  const msg = new Message('t', 'payload', { headers: [{ name: 'h', value: 'v' }, ['e', null]] });
  assert.deepEqual([msg.text(), msg.partition, msg.offset, msg.key], ['payload', 0, 0, null]);
  assert.deepEqual(msg.header('h'), new TextEncoder().encode('v'));
  assert.equal(msg.header('e'), null);
  assert.equal(msg.header('missing'), null);
});

test('function and class handlers', () => {
  const seen = [];
  const fn = { init: (params) => seen.push(params.require('k')), handle: (msg) => save({ name: msg.topic }) };
  assert.deepEqual(run(fn, new Message('t', ''), { k: 'v' }), [save({ name: 't' })]);
  assert.deepEqual(seen, ['v']);
  class Handler {
    constructor(params) {
      this.sink = params.get('sink', 'out');
    }
    handle(msg) {
      if (msg.text() === 'bad') throw new BadRecord('bad value');
      return [forward(this.sink)];
    }
  }
  assert.deepEqual(run({ Handler }, new Message('t', 'x')), [forward('out')]);
  assert.throws(() => run({ Handler }, new Message('t', 'bad')), (e) => e instanceof HandlerError && e.kind === 'bad-record' && e.text === 'bad value');
  assert.throws(() => load({}), /neither a class Handler/);
});
