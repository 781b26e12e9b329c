// Native stand-ins for what the host provides, so handler logic that keeps
// `state` is unit-tested under Node with `node --test`.
//
// Under Node, `state` reads and writes the `MemoryState` that `state()`
// returns (one per process; `resetState()` starts a fresh one, e.g. in
// `beforeEach`). `handle(fn, msg)` runs one message the way the host does:
// the message's timestamp is the clock for expiry, and when the handler
// throws, its writes are discarded.
//
//     import { Message, save, testing } from './alerthost/index.js';
//     testing.resetState();
//     const msg = new Message('t', 'x', { timestamp: { millis: 1000, kind: 'create-time' } });
//     assert.deepEqual(testing.handle(handler.handle, msg), [save()]);

import { actionsOf } from './index.js';
import { currentBackend, setBackend } from './state.js';

/** The host's default `[handler.state] max_key_bytes`. */
export const DEFAULT_MAX_KEY_BYTES = 256;
/** The host's default `[handler.state] max_value_kib`. */
export const DEFAULT_MAX_VALUE_KIB = 64;

const I64_MAX = 2n ** 63n - 1n;

/** A key or value over the host's default limits (the host stops the call;
 * under Node, the test fails). */
export class StateLimitError extends Error {
  constructor(message) {
    super(message);
    this.name = 'StateLimitError';
  }
}

const utf8Length = (text) => new TextEncoder().encode(text).length;

function checkKey(key) {
  const size = utf8Length(key);
  if (size > DEFAULT_MAX_KEY_BYTES) {
    throw new StateLimitError(
      `state key ${JSON.stringify(key)} is ${size} bytes, over [handler.state] max_key_bytes = ${DEFAULT_MAX_KEY_BYTES}`,
    );
  }
}

/**
 * An in-memory state store with the host's semantics: keys set with a TTL
 * expire that many milliseconds after the current message's timestamp, and
 * read as absent from the first message whose timestamp is at or past that
 * moment. Times are numbers of milliseconds since the Unix epoch.
 */
export class MemoryState {
  constructor() {
    /** key → {value: Uint8Array, expires: number | null} */
    this.entries = new Map();
    this.nowMs = null;
  }

  /** Make `millis` the current message time. */
  setNow(millis) {
    this.nowMs = Number(millis);
  }

  /** The current message time: the one last set, else the system clock. */
  now() {
    return this.nowMs ?? Date.now();
  }

  /** The value under `key`, unless absent or expired (`null`). */
  get(key) {
    const entry = this.entries.get(key);
    return entry && this.live(entry) ? entry.value : null;
  }

  /** Store `value` under `key`, expiring `ttlMs` after the current message
   * time when given (`null`: never). */
  set(key, value, ttlMs = null) {
    checkKey(key);
    if (value.length > DEFAULT_MAX_VALUE_KIB * 1024) {
      throw new StateLimitError(
        `state value for key ${JSON.stringify(key)} is ${value.length} bytes, over [handler.state] max_value_kib = ${DEFAULT_MAX_VALUE_KIB}`,
      );
    }
    let expires = null;
    if (ttlMs !== null) {
      // In BigInt, so a TTL near 2^64 saturates like the host's i64.
      const sum = BigInt(this.now()) + BigInt(ttlMs);
      expires = Number(sum > I64_MAX ? I64_MAX : sum);
    }
    this.entries.set(key, { value: Uint8Array.from(value), expires });
  }

  /** Remove `key`. */
  delete(key) {
    checkKey(key);
    this.entries.delete(key);
  }

  /** The keys that are live at the current message time, sorted. */
  keys() {
    return [...this.entries].filter(([, e]) => this.live(e)).map(([k]) => k).sort();
  }

  /** When `key` expires; `null` when it is absent or has no TTL. */
  expiresAt(key) {
    return this.entries.get(key)?.expires ?? null;
  }

  live(entry) {
    return entry.expires === null || entry.expires > this.now();
  }
}

/** The `MemoryState` that `state` uses under Node. */
export function state() {
  const backend = currentBackend();
  if (!(backend instanceof MemoryState)) throw new Error('state is not the in-memory stand-in here (inside a component?)');
  return backend;
}

/** Start a fresh, empty `MemoryState` for `state`; returns it. */
export function resetState() {
  const fresh = new MemoryState();
  setBackend(fresh);
  return fresh;
}

/**
 * Run `handler` (a `handle` function, or `instance.handle.bind(instance)`)
 * on `msg` as the host would: the state clock is the message's timestamp
 * (the system clock when it has none), and when the handler throws, its
 * state writes are discarded. Returns the actions as an array.
 */
export function handle(handler, msg) {
  const current = state();
  current.setNow(msg.timestamp ? Number(msg.timestamp.millis) : Date.now());
  const before = new Map(current.entries);
  try {
    return actionsOf(handler(msg));
  } catch (e) {
    current.entries = before;
    throw e;
  }
}
