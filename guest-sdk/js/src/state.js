// Per-handler state kept by the host: a small key-value store that outlives
// messages, restarts and hot swaps (the WIT `state` interface).
//
// Inside a component each function calls the host. Under Node they use the
// in-memory `MemoryState` of `testing.js`, which follows the host's
// semantics; run a message through `testing.handle` so that its timestamp
// drives expiry and a failed call leaves the state as it was.
//
// Semantics (the host's, in short): writes made while handling a message
// take effect with that message, and are discarded when the handler fails on
// it; a key set with `ttlMs` expires that many milliseconds after the
// *message's* timestamp (message time, so a replay expires keys alike); in
// `init`, `get` works and `set`/`delete` fail `init`. A key or value over the
// operator's limits (`[handler.state]`, by default 256-byte keys and 64 KiB
// values) stops the call, and the message fails under the handler's error
// policy.
//
// A component imports the host's `state` interface only when its handler
// uses this module (`build.mjs` looks for `state` among the names the
// handler's sources import, or for `state.get(`, `state.set(`,
// `state.delete(`); a handler without state runs on hosts and
// configurations that offer none.

import { toBytes } from './payload.js';
import { MemoryState } from './testing.js';

// Under Node a MemoryState (installed on first use or by testing.js); inside
// a component the glue installs the host's `state` import.
let backend = null;

/** Where the functions here go; the component glue and `testing.js` set it. */
export function setBackend(next) {
  backend = next;
}

/** The backend in use, a fresh `MemoryState` when none was set. */
export function currentBackend() {
  if (backend === null) backend = new MemoryState();
  return backend;
}

/** The value stored under `key` (a `Uint8Array`); `null` when there is none
 * or it has expired. */
export function get(key) {
  return currentBackend().get(String(key)) ?? null;
}

/**
 * Store `value` (bytes, or a string as UTF-8) under `key`. With `ttlMs`, the
 * key expires that many milliseconds after the timestamp of the message being
 * handled (the host's clock for a message without a timestamp); without it,
 * it stays until deleted.
 */
export function set(key, value, { ttlMs = null } = {}) {
  let ttl = null;
  if (ttlMs !== null && ttlMs !== undefined) {
    ttl = Math.floor(Number(ttlMs));
    if (!Number.isFinite(ttl) || ttl < 0) throw new RangeError(`state ttlMs must be a number of milliseconds >= 0, got ${ttlMs}`);
  }
  currentBackend().set(String(key), toBytes(value), ttl);
}

/** Remove `key`; nothing happens when it is not there. */
function del(key) {
  currentBackend().delete(String(key));
}

export { del as delete };
