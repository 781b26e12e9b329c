// `state` under Node: the in-memory stand-in follows the host's semantics
// (message-time TTL, writes of a failed call discarded, limits).

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { Message, Transient, state, testing } from '../src/index.js';

const { MemoryState, StateLimitError } = testing;

const at = (topic, millis) => new Message(topic, '', { timestamp: { millis, kind: 'create-time' } });

/** Counts messages per topic for 100 ms; fails on the second message of
 * topic `bad` after writing. */
function counter(msg) {
  const seen = state.get(msg.topic)?.[0] ?? 0;
  state.set(msg.topic, [seen + 1], { ttlMs: 100 });
  if (msg.topic === 'bad' && seen > 0) throw new Transient('after a write');
  return [];
}

describe('MemoryState', () => {
  test('keys expire at message time plus ttl', () => {
    const s = new MemoryState();
    s.setNow(1000);
    s.set('a', Uint8Array.of(1), 500);
    s.set('b', Uint8Array.of(2));
    assert.equal(s.expiresAt('a'), 1500);
    s.setNow(1499);
    assert.deepEqual(s.get('a'), Uint8Array.of(1));
    s.setNow(1500);
    assert.equal(s.get('a'), null, 'expired at exactly now + ttl');
    assert.deepEqual(s.get('b'), Uint8Array.of(2));
    assert.deepEqual(s.keys(), ['b']);
    s.delete('b');
    s.delete('never-there');
    assert.deepEqual(s.keys(), []);
  });

  test('a set replaces the value and its ttl', () => {
    const s = new MemoryState();
    s.setNow(0);
    s.set('k', Uint8Array.of(1), 10);
    s.set('k', Uint8Array.of(2));
    s.setNow(1e6);
    assert.deepEqual(s.get('k'), Uint8Array.of(2));
    s.set('k', Uint8Array.of(3), 2n ** 64n - 1n);
    assert.equal(s.expiresAt('k'), Number(2n ** 63n - 1n));
  });

  test('keys and values over the default limits are refused', () => {
    assert.throws(() => new MemoryState().set('k', new Uint8Array(64 * 1024 + 1)), {
      name: 'StateLimitError',
      message: /over \[handler.state\] max_value_kib = 64/,
    });
    assert.throws(() => new MemoryState().set('k'.repeat(257), new Uint8Array(0)), StateLimitError);
  });
});

describe('state', () => {
  beforeEach(() => testing.resetState());

  test('text values are UTF-8 and ttls whole milliseconds', () => {
    testing.state().setNow(0);
    state.set('k', 'é', { ttlMs: 2.5 });
    assert.deepEqual(state.get('k'), Uint8Array.of(0xc3, 0xa9));
    assert.equal(testing.state().expiresAt('k'), 2);
    assert.throws(() => state.set('k', 'x', { ttlMs: -1 }), RangeError);
    state.delete('k');
    assert.equal(state.get('k'), null);
  });

  test('handle uses message time and discards writes of a failed call', () => {
    testing.handle(counter, at('a', 1000));
    testing.handle(counter, at('a', 1050));
    assert.deepEqual(testing.state().get('a'), Uint8Array.of(2));
    assert.equal(testing.state().expiresAt('a'), 1150);
    // 100 ms after the last write: expired, counting starts again.
    testing.handle(counter, at('a', 1150));
    assert.deepEqual(testing.state().get('a'), Uint8Array.of(1));

    testing.handle(counter, at('bad', 2000));
    assert.throws(() => testing.handle(counter, at('bad', 2001)), Transient);
    assert.deepEqual(testing.state().get('bad'), Uint8Array.of(1), "the failed call's write is gone");
  });
});
