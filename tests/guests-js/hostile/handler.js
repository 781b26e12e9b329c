// hostile: a JavaScript guest that tries what a handler must not be able to
// do, chosen by the message:
//
// - `loop`: spin forever (the host's time limit stops it);
// - `alloc`: allocate until memory runs out (the host's memory limit stops it);
// - `passwd`: read /etc/passwd (there is no file API, and no file is visible);
// - `fetch`: fetch a URL (no network);
// - anything else: save the message, to show the handler still works.
//
// What it found out is forwarded to the sink `report`, as text starting with
// `denied:` when the attempt failed and `allowed:` when it did not.

import { forward, save } from '../../../guest-sdk/js/src/index.js';

function attempt(what, action) {
  try {
    return forward('report', { value: `allowed: ${what}: ${String(action()).slice(0, 200)}` });
  } catch (e) {
    return forward('report', { value: `denied: ${what}: ${e?.name ?? 'Error'}: ${e?.message ?? e}` });
  }
}

function readPasswd() {
  if (typeof globalThis.require === 'function') return globalThis.require('fs').readFileSync('/etc/passwd', 'utf8');
  if (typeof globalThis.Deno === 'object') return globalThis.Deno.readTextFileSync('/etc/passwd');
  throw new Error('no file API (no require, no Deno, no fs)');
}

function fetchSomething() {
  if (typeof globalThis.fetch !== 'function') throw new Error('fetch is not defined');
  // Only the synchronous part can fail here; a promise means the request was let through.
  const pending = globalThis.fetch('http://127.0.0.1:9/');
  return `a ${typeof pending} (request started)`;
}

export function handle(msg) {
  const what = new TextDecoder().decode(msg.value).trim();
  if (what === 'loop') {
    for (;;);
  }
  if (what === 'alloc') {
    const hog = [];
    for (;;) hog.push(new Float64Array(1 << 22).fill(1));
  }
  if (what === 'passwd') return attempt('passwd', readPasswd);
  if (what === 'fetch') return attempt('fetch', fetchSomething);
  return save();
}
