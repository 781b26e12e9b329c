// Every payload helper's result on each file named on the command line, one
// JSON line per file, in the shape tests/parity.rs compares across the Rust,
// Python and JavaScript SDKs (dump.py and the Rust side write the same).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

import { payload } from '../../guest-sdk/js/src/index.js';

const { ClassicBinary, Json, PayloadError, VoEvent } = payload;

// Paths looked up in every JSON document, besides its top-level keys.
const JSON_PATHS = ['', 'ra', 'dec', 'ra_dec_error', 'trigger_time', 'id.0', 'id.+0', 'id.01', 'event.classification.BNS', 'a.b', '0', 'x..y'];

/** A number as the hex of its float bits, so the comparison is exact. */
function num(x) {
  if (x === null || x === undefined) return null;
  if (Number.isNaN(x)) return 'nan';
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return view.getBigUint64(0).toString(16).padStart(16, '0');
}

const byCodePoint = (a, b) => {
  const [x, y] = [Array.from(a), Array.from(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
};

/** A JSON value as a flat list of tokens, object keys sorted by code point:
 * nesting depth cannot break the comparison. */
function canonical(value, out = []) {
  if (value === null || typeof value === 'boolean') out.push(JSON.stringify(value));
  else if (typeof value === 'number') out.push(`#${num(value)}`);
  else if (typeof value === 'string') out.push(`$${value}`);
  else if (Array.isArray(value)) {
    out.push('[');
    for (const item of value) canonical(item, out);
    out.push(']');
  } else {
    out.push('{');
    for (const key of Object.keys(value).sort(byCodePoint)) {
      out.push(`k${key}`);
      canonical(value[key], out);
    }
    out.push('}');
  }
  return out;
}

function attempt(f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof PayloadError) return { error: e.format };
    throw e;
  }
}

function voevent(bytes) {
  const event = VoEvent.parse(bytes);
  const names = [...new Set(event.params.map((p) => p.name))].sort(byCodePoint);
  const pairs = new Map();
  for (const p of event.params) if (p.group !== null) pairs.set(JSON.stringify([p.group, p.name]), [p.group, p.name]);
  const groups = [...pairs.values()].sort((a, b) => byCodePoint(a[0], b[0]) || byCodePoint(a[1], b[1]));
  const position = event.position;
  return {
    ivorn: event.ivorn,
    role: event.role,
    version: event.version,
    date: event.date,
    params: event.params.map((p) => [p.name, p.value, p.unit, p.ucd, p.group]),
    iso_time: event.isoTime,
    position: position === null ? null : [num(position.ra), num(position.dec), num(position.errorRadius)],
    packet_type: event.packetType(),
    time_unix_millis: event.timeUnixMillis(),
    date_unix_millis: event.date === null ? null : payload.isoTimeToUnixMillis(event.date),
    param: names.map((n) => [n, event.param(n), attempt(() => num(event.paramNumber(n)))]),
    group_param: groups.map(([g, n]) => [g, n, event.groupParam(g, n)]),
  };
}

function jsonDoc(bytes) {
  const doc = Json.parse(bytes);
  const paths = [...JSON_PATHS];
  const value = doc.value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    paths.push(...Object.keys(value).sort(byCodePoint));
  }
  return {
    value: canonical(value),
    lookup: paths.map((p) => [p, doc.str(p), num(doc.number(p))]),
  };
}

function binary(bytes) {
  const packet = ClassicBinary.parse(bytes);
  return {
    words: packet.words,
    word_40: packet.word(40),
    packet_type: packet.packetType,
    trigger_number: packet.triggerNumber,
    burst_tjd: packet.burstTjd,
    burst_sod: num(packet.burstSod),
    burst_unix_millis: num(packet.burstUnixMillis),
  };
}

function dump(bytes) {
  return {
    detect: payload.detect(bytes),
    voevent: attempt(() => voevent(bytes)),
    json: attempt(() => jsonDoc(bytes)),
    classic_text_pairs: payload.classicTextPairs(bytes),
    classic_binary: attempt(() => binary(bytes)),
  };
}

const escapeNonAscii = (text) => text.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(readFileSync(path));
  console.log(escapeNonAscii(JSON.stringify({ file: basename(path), ...dump(bytes) })));
}
