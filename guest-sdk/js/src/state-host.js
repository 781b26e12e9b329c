// `state` inside a component: the host's `state` import. The entry module
// that `build.mjs` writes imports this file only when the handler uses
// `state`, so a component without state does not import the interface.

import { delete as hostDelete, get as hostGet, set as hostSet } from 'alerthost:handler/state@0.2.0';

/** A backend for `state.js` that calls the host. */
export const hostState = {
  get(key) {
    return hostGet(key) ?? null;
  },
  set(key, value, ttlMs) {
    hostSet(key, value, ttlMs === null ? undefined : BigInt(ttlMs));
  },
  delete(key) {
    hostDelete(key);
  },
};
