// Payload helpers: format detection and field access for the formats GCN
// alerts come in, with the same rules as the Rust SDK's `payload` module.
//
// A handler may receive messages from any topic, so it should decide by
// content: `detect` looks at the bytes, then `VoEvent`, `Json`,
// `classicTextPairs` or `ClassicBinary` read them. Plain JavaScript: works the
// same under Node (tests) and inside a component.

import { NOT_XML_CHAR, XmlError, lineOf, localName, scan } from './xml.js';

/** Payload formats, as `detect` names them. */
export const Format = Object.freeze({
  /** An IVOA VOEvent XML document (`<VOEvent>` or `<voe:VOEvent>` root). */
  VOEVENT: 'voevent',
  /** A JSON document, such as a GCN unified-schema notice or an IGWN alert. */
  JSON: 'json',
  /** A GCN classic text notice: lines of `KEY:  value`. */
  CLASSIC_TEXT: 'classic-text',
  /** A GCN classic binary packet: 160 bytes, 40 big-endian 32-bit words. */
  CLASSIC_BINARY: 'classic-binary',
  /** None of the above, including XML with another root element. */
  UNKNOWN: 'unknown',
});

const FORMAT_NAMES = {
  voevent: 'VOEvent',
  json: 'JSON',
  'classic-text': 'classic text notice',
  'classic-binary': 'classic binary packet',
  unknown: 'unknown payload',
};

/** Size of a GCN classic binary packet, in bytes. */
export const CLASSIC_PACKET_LEN = 160;

/** Why a payload could not be read as the format asked for. */
export class PayloadError extends Error {
  constructor(format, detail) {
    super(`invalid ${FORMAT_NAMES[format]}: ${detail}`);
    this.name = 'PayloadError';
    /** The format the payload was read as. */
    this.format = format;
    /** What is wrong, without the format name. */
    this.detail = detail;
  }
}

const encoder = new TextEncoder();

/** `value` as bytes: a string is encoded as UTF-8. */
export function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || Array.isArray(value)) return new Uint8Array(value);
  throw new TypeError(`expected bytes (Uint8Array) or a string, got ${typeof value}`);
}

/** Strict UTF-8 decoding that keeps a byte-order mark; `null` when invalid. */
function utf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** The offset of the first byte that is not part of valid UTF-8 (Rust's
 * `Utf8Error::valid_up_to`). */
function validUpTo(bytes) {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    const len = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (!len || i + len > n) return i;
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (bytes[i + 1] < lo || bytes[i + 1] > hi) return i;
    for (let k = 2; k < len; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    i += len;
  }
  return n;
}

const BOM = [0xef, 0xbb, 0xbf];
const hasBom = (bytes) => bytes.length >= 3 && bytes[0] === BOM[0] && bytes[1] === BOM[1] && bytes[2] === BOM[2];
// Rust's `is_ascii_whitespace`: space, tab, LF, form feed, CR.
const isAsciiSpace = (b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d;
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/;
const KEY = /^[A-Za-z0-9_]+$/;
// Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips.
// JavaScript's own `trim()` also strips U+FEFF, keeps U+0085, and would disagree.
const WHITESPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
  0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

/** `text` without leading and trailing whitespace, as Rust's `str::trim`
 * defines it (a loop: a regular expression anchored at the end would take
 * quadratic time on long runs of spaces). */
export function trim(text) {
  let start = 0;
  let end = text.length;
  while (start < end && WHITESPACE.has(text.charCodeAt(start))) start++;
  while (end > start && WHITESPACE.has(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

// serde_json's nesting limit: a document 128 arrays or objects deep is refused.
const JSON_MAX_DEPTH = 127;
const JSON_NESTING = /"[^"\\]*(?:\\[\s\S][^"\\]*)*"|[[\]{}]/g;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Parse JSON as strictly as serde_json: no numbers beyond the float range
 * (JSON.parse makes them infinite), no lone surrogates, at most 127 arrays or
 * objects deep. Throws a SyntaxError saying what is wrong. */
function strictJson(text) {
  // One match per string or bracket: the regular expression runs as native
  // code, where a loop over every character would be interpreted (a 900 KB
  // sky map would take seconds inside a component).
  let depth = 0;
  JSON_NESTING.lastIndex = 0;
  for (let m = JSON_NESTING.exec(text); m; m = JSON_NESTING.exec(text)) {
    const c = m[0];
    if (c === '[' || c === '{') {
      if (++depth > JSON_MAX_DEPTH) throw new SyntaxError('recursion limit exceeded');
    } else if (c === ']' || c === '}') {
      depth--;
    }
  }
  const value = JSON.parse(text);
  const stack = [value];
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === 'number') {
      if (!Number.isFinite(item)) throw new SyntaxError('number out of range');
    } else if (typeof item === 'string') {
      if (LONE_SURROGATE.test(item)) throw new SyntaxError('lone surrogate in a string');
    } else if (item !== null && typeof item === 'object') {
      for (const [key, inner] of Object.entries(item)) {
        if (!Array.isArray(item)) stack.push(key);
        stack.push(inner);
      }
    }
  }
  return value;
}

// The forms Rust's `f64::from_str` accepts.
const F64 = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;

/**
 * `text` (surrounding whitespace allowed) as a number, in the forms a Rust
 * `f64` accepts; `null` otherwise. May be infinite or NaN.
 */
export function parseF64(text) {
  const t = trim(String(text));
  if (!F64.test(t)) return null;
  const word = t.replace(/^[+-]/, '').toLowerCase();
  const sign = t.startsWith('-') ? -1 : 1;
  if (word === 'inf' || word === 'infinity') return sign * Infinity;
  if (word === 'nan') return NaN;
  return Number(t);
}

function parseFinite(text) {
  const value = parseF64(text);
  return value !== null && Number.isFinite(value) ? value : null;
}

/** `text` quoted the way Rust's `{:?}` quotes a string (close enough). */
const debugString = (text) => JSON.stringify(text);

/**
 * Guess the format of `bytes` from their content alone (never from a topic
 * name). Same rules as the Rust SDK's `payload::detect`:
 *
 * - `'voevent'`: after an optional byte-order mark, whitespace, XML
 *   declaration, comments and doctype, the root element is `VOEvent` with any
 *   namespace prefix.
 * - `'json'`: the first non-space byte is `{` or `[` and the whole payload
 *   parses as JSON.
 * - `'classic-text'`: printable text whose first non-blank line is
 *   `KEY: value` with an upper-case key.
 * - `'classic-binary'`: exactly 160 bytes that are not text.
 * - `'unknown'`: anything else.
 */
export function detect(bytes) {
  bytes = toBytes(bytes);
  let start = hasBom(bytes) ? 3 : 0;
  while (start < bytes.length && isAsciiSpace(bytes[start])) start++;
  const first = bytes[start];
  if (first === 0x3c /* < */) {
    return xmlRootLocalName(bytes.subarray(start)) === 'VOEvent' ? Format.VOEVENT : Format.UNKNOWN;
  }
  if (first === 0x7b /* { */ || first === 0x5b /* [ */) {
    const text = utf8(bytes);
    if (text !== null) {
      try {
        strictJson(text);
        return Format.JSON;
      } catch {
        // Not JSON after all; it may still be text.
      }
    }
  }
  const text = utf8(bytes);
  if (text !== null && !CONTROL.test(text)) {
    return looksLikeClassicText(bytes.subarray(start)) ? Format.CLASSIC_TEXT : Format.UNKNOWN;
  }
  return bytes.length === CLASSIC_PACKET_LEN ? Format.CLASSIC_BINARY : Format.UNKNOWN;
}

function looksLikeClassicText(bytes) {
  let end = bytes.indexOf(0x0a);
  if (end < 0) end = bytes.length;
  const firstLine = new TextDecoder().decode(bytes.subarray(0, end));
  const colon = firstLine.indexOf(':');
  if (colon < 0) return false;
  const key = firstLine.slice(0, colon);
  return KEY.test(key) && /[A-Z]/.test(key) && !/[a-z]/.test(key);
}

/** The local name of the first element, skipping the prolog; `null` when
 * the prolog is not closed or no element follows it. */
function xmlRootLocalName(bytes) {
  // Only the ASCII structure matters here, so a lossy decode is fine.
  let xml = new TextDecoder().decode(bytes.subarray(0, Math.min(bytes.length, 1 << 20)));
  for (;;) {
    xml = xml.replace(/^[ \t\n\f\r]+/, '');
    let skip;
    if (xml.startsWith('<?')) skip = ['?>', xml.indexOf('?>')];
    else if (xml.startsWith('<!--')) skip = ['-->', xml.indexOf('-->')];
    else if (xml.startsWith('<!')) skip = ['>', xml.indexOf('>')];
    if (skip) {
      if (skip[1] < 0) return null;
      xml = xml.slice(skip[1] + skip[0].length);
      continue;
    }
    if (!xml.startsWith('<')) return null;
    const name = /^[^\s>/]*/.exec(xml.slice(1))[0];
    const local = name.slice(name.lastIndexOf(':') + 1);
    return local || null;
  }
}

// ------------------------------------------------------------- ISO times

function num(text, start, end) {
  const digits = text.slice(start, end);
  return digits.length === end - start && /^[0-9]+$/.test(digits) ? Number(digits) : null;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
 * `days_from_civil`). */
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/**
 * Milliseconds since the Unix epoch for an ISO 8601 date and time such as
 * `2018-04-22T21:54:11.05`, `2026-02-07T00:55:47.933189Z` or
 * `2024-05-01T10:00:00+02:00`. A time without an offset is UTC, which is what
 * GCN means. Fractions beyond milliseconds are truncated. `null` when `text`
 * is not in that form or names an impossible date or time.
 */
export function isoTimeToUnixMillis(text) {
  text = trim(String(text));
  if (!/^[\x00-\x7f]*$/.test(text) || text.length < 11 || !'Tt '.includes(text[10])) return null;
  const date = text.slice(0, 10);
  const rest = text.slice(11);
  const [year, month, day] = [num(date, 0, 4), num(date, 5, 7), num(date, 8, 10)];
  if (year === null || month === null || day === null || date[4] !== '-' || date[7] !== '-') return null;
  let zoneAt = rest.search(/[Zz+-]/);
  if (zoneAt < 0) zoneAt = rest.length;
  const clock = rest.slice(0, zoneAt);
  const zone = rest.slice(zoneAt);
  const dot = clock.indexOf('.');
  const hms = dot < 0 ? clock : clock.slice(0, dot);
  const fraction = dot < 0 ? '' : clock.slice(dot + 1);
  if (dot >= 0 && fraction === '') return null;
  const [hour, minute, second] = [num(hms, 0, 2), num(hms, 3, 5), num(hms, 6, 8)];
  if (hour === null || minute === null || second === null) return null;
  if (hms.length !== 8 || hms[2] !== ':' || hms[5] !== ':') return null;
  if (fraction && !/^[0-9]+$/.test(fraction)) return null;
  const millis = Number((fraction + '000').slice(0, 3));
  let offsetMinutes = 0;
  if (!['', 'Z', 'z'].includes(zone)) {
    const sign = zone[0] === '+' ? 1 : zone[0] === '-' ? -1 : 0;
    if (!sign) return null;
    const hhmm = zone.slice(1);
    let hText;
    let mText;
    const colon = hhmm.indexOf(':');
    if (colon >= 0) [hText, mText] = [hhmm.slice(0, colon), hhmm.slice(colon + 1)];
    else if (hhmm.length >= 2) [hText, mText] = [hhmm.slice(0, 2), hhmm.slice(2)];
    else return null;
    const [h, m] = [num(hText, 0, 2), num(mText, 0, 2)];
    if (hText.length !== 2 || mText.length !== 2 || h === null || m === null || h > 23 || m > 59) return null;
    offsetMinutes = sign * (h * 60 + m);
  }
  let daysInMonth;
  if ([1, 3, 5, 7, 8, 10, 12].includes(month)) daysInMonth = 31;
  else if ([4, 6, 9, 11].includes(month)) daysInMonth = 30;
  else if (month === 2) daysInMonth = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  else return null;
  if (day === 0 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return null;
  const seconds =
    daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60;
  return seconds * 1000 + millis;
}

// ------------------------------------------------------------- VOEvent

/**
 * A parsed VOEvent document: identity, `Who/Date`, every `Param` of `What`
 * (with the name of its innermost `Group`), and the first `WhereWhen` time
 * and equatorial position.
 *
 * Fields: `ivorn`, `role` (as written; `'observation'` when absent, `'test'`
 * for test notices), `version`, `date`, `params` (`{name, value, unit, ucd,
 * group}`), `isoTime`, `position` (`{ra, dec, errorRadius}` in degrees, or
 * `null`). Absent values are `null`.
 */
export class VoEvent {
  constructor({ ivorn, role = 'observation', version = null, date = null, params = [], isoTime = null, position = null }) {
    this.ivorn = ivorn;
    this.role = role;
    this.version = version;
    this.date = date;
    this.params = params;
    this.isoTime = isoTime;
    this.position = position;
  }

  /**
   * Parse a VOEvent document. The root must be `VOEvent` (any namespace
   * prefix) with an `ivorn`; the XML must be well-formed UTF-8. A
   * `PayloadError` names the line and what is wrong.
   */
  static parse(bytes) {
    bytes = toBytes(bytes);
    if (hasBom(bytes)) bytes = bytes.subarray(3);
    const decoded = utf8(bytes);
    if (decoded === null) throw new PayloadError(Format.VOEVENT, `not UTF-8 at byte ${validUpTo(bytes)}`);
    const bad = NOT_XML_CHAR.exec(decoded);
    if (bad) {
      const code = bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
      throw new PayloadError(Format.VOEVENT, `line ${lineOf(decoded, bad.index)}: character U+${code} is not allowed in XML`);
    }
    return new VoEventParser().run(decoded.replace(/\r\n?/g, '\n'));
  }

  /** The value of the first param named `name`, in a group or not; `null` when absent. */
  param(name) {
    const p = this.params.find((p) => p.name === name);
    return p ? p.value : null;
  }

  /** The value of the param `name` inside the group named `group`; `null` when absent. */
  groupParam(group, name) {
    const p = this.params.find((p) => p.name === name && p.group === group);
    return p ? p.value : null;
  }

  /** The first param named `name` as a finite number; a `PayloadError` says
   * whether it is missing or not a number. */
  paramNumber(name) {
    const value = this.param(name);
    if (value === null) throw new PayloadError(Format.VOEVENT, `no Param named \`${name}\``);
    const number = parseFinite(value);
    if (number === null) {
      throw new PayloadError(Format.VOEVENT, `Param \`${name}\` = ${debugString(value)} is not a number`);
    }
    return number;
  }

  /** GCN's notice type number, the `Packet_Type` param (131 for a Fermi GBM
   * sub-threshold notice, 61 for a Swift BAT GRB position); `null` when absent. */
  packetType() {
    const value = this.param('Packet_Type');
    if (value === null || !/^[+-]?[0-9]+$/.test(trim(value))) return null;
    const number = Number(trim(value));
    return number >= -(2 ** 31) && number < 2 ** 31 ? number : null;
  }

  /** `isoTime` in milliseconds since the Unix epoch; `null` when absent or invalid. */
  timeUnixMillis() {
    return this.isoTime === null ? null : isoTimeToUnixMillis(this.isoTime);
  }
}

class Failure extends Error {}

/** One pass over the scanner's events, keeping the same state as the Rust parser. */
class VoEventParser {
  constructor() {
    this.path = [];
    // How many of the open elements are <What> and <WhereWhen>: asking
    // whether one is open must not walk the path (deep documents would take
    // quadratic time).
    this.openCount = { What: 0, WhereWhen: 0 };
    this.groups = [];
    this.text = '';
    this.openParam = null;
    this.positionUnit = null;
    this.coordSystem = null;
    this.c1 = null;
    this.c2 = null;
    this.errorRadius = null;
    this.rootClosed = false;
    this.event = null;
    /** Offset of the event being handled, for error messages. */
    this.at = 0;
  }

  run(text) {
    const fail = (at, detail) => new PayloadError(Format.VOEVENT, `line ${lineOf(text, at)}: ${detail}`);
    try {
      scan(text, {
        onStart: (name, attrs, at) => {
          this.at = at;
          this.open(name, attrs);
        },
        onEnd: (name, at) => {
          this.at = at;
          this.close(name);
        },
        onText: (t, at) => {
          this.at = at;
          this.addText(t);
        },
      });
    } catch (e) {
      if (e instanceof XmlError) throw fail(e.at, `malformed XML: ${e.message}`);
      if (e instanceof Failure) throw fail(this.at, e.message);
      throw e;
    }
    if (this.path.length) throw fail(text.length, `document ends inside <${this.path.at(-1)}>`);
    if (!this.event) throw new PayloadError(Format.VOEVENT, 'no root element');
    return this.event;
  }

  within(element) {
    return this.openCount[element] > 0;
  }

  open(qname, attrs) {
    const name = localName(qname);
    this.text = '';
    if (this.rootClosed) throw new Failure(`<${name}> after the end of the root element`);
    if (this.path.length === 0) {
      if (name !== 'VOEvent') throw new Failure(`root element is <${name}>, not <VOEvent>`);
      if (!Object.hasOwn(attrs, 'ivorn')) throw new Failure('<VOEvent> has no ivorn attribute');
      this.event = new VoEvent({ ivorn: attrs.ivorn, role: attrs.role ?? 'observation', version: attrs.version ?? null });
    }
    if (name === 'Group') {
      this.groups.push(attrs.name ?? null);
    } else if (name === 'Param' && this.within('What')) {
      this.openParam = {
        name: attrs.name ?? '',
        value: attrs.value ?? '',
        unit: attrs.unit ?? null,
        ucd: attrs.ucd ?? null,
        group: this.groups.length ? this.groups.at(-1) : null,
      };
    } else if (name === 'AstroCoords' && this.within('WhereWhen')) {
      this.coordSystem = attrs.coord_system_id ?? null;
    } else if (name === 'Position2D' && this.within('WhereWhen')) {
      this.positionUnit = attrs.unit ?? null;
      this.c1 = this.c2 = this.errorRadius = null;
    }
    this.path.push(name);
    if (Object.hasOwn(this.openCount, name)) this.openCount[name]++;
  }

  close(qname) {
    const name = localName(qname);
    const open = this.path.pop();
    if (open === undefined) throw new Failure(`end tag </${name}> without a start tag`);
    if (open !== name) throw new Failure(`malformed XML: expected </${open}>, found </${name}>`);
    if (Object.hasOwn(this.openCount, name)) this.openCount[name]--;
    const text = this.text;
    this.text = '';
    const inWhereWhen = this.within('WhereWhen');
    const event = this.event;
    const parent = this.path.length ? this.path.at(-1) : null;
    if (parent === null) {
      this.rootClosed = true;
      return;
    }
    if (name === 'Group') {
      this.groups.pop();
    } else if (name === 'Param') {
      if (this.openParam) event.params.push(this.openParam);
      this.openParam = null;
    } else if (parent === 'Param' && name === 'Value') {
      if (this.openParam && this.openParam.value === '') this.openParam.value = trim(text);
    } else if (parent === 'Who' && name === 'Date' && this.path.length === 2 && event.date === null) {
      event.date = trim(text);
    } else if (name === 'ISOTime' && inWhereWhen && event.isoTime === null) {
      event.isoTime = trim(text);
    } else if (inWhereWhen && ((parent === 'Value2' && (name === 'C1' || name === 'C2')) || (parent === 'Position2D' && name === 'Error2Radius'))) {
      const value = parseFinite(text);
      if (value === null) throw new Failure(`<${name}> ${debugString(trim(text))} is not a number`);
      if (name === 'C1') this.c1 = value;
      else if (name === 'C2') this.c2 = value;
      else this.errorRadius = value;
    } else if (name === 'Position2D' && inWhereWhen && event.position === null) {
      const inDegrees = this.positionUnit === null || this.positionUnit === 'deg';
      const system = this.coordSystem;
      const equatorial = system === null || system.includes('FK5') || system.includes('ICRS');
      if (this.c1 !== null && this.c2 !== null && inDegrees && equatorial) {
        event.position = { ra: this.c1, dec: this.c2, errorRadius: this.errorRadius };
      }
    }
  }

  addText(text) {
    if (this.rootClosed || this.path.length === 0) {
      if (trim(text) !== '') throw new Failure('text after the end of the root element');
      return;
    }
    this.text += text;
  }
}

// ------------------------------------------------------------- JSON

/**
 * A parsed JSON document with dotted-path access. GCN unified-schema notices
 * put what handlers usually need at the top level: `ra`, `dec` and
 * `ra_dec_error` (degrees), `trigger_time` and `alert_datetime` (ISO 8601
 * UTC), `mission`, `instrument`, `$schema`.
 */
export class Json {
  /** Wrap an existing value (the whole document is `.value`). */
  constructor(value) {
    this.value = value;
  }

  /** Parse a JSON document; a `PayloadError` says what is wrong. */
  static parse(bytes) {
    const text = utf8(toBytes(bytes));
    if (text === null) throw new PayloadError(Format.JSON, 'not UTF-8');
    try {
      return new Json(strictJson(text));
    } catch (e) {
      throw new PayloadError(Format.JSON, e.message);
    }
  }

  /**
   * The value at a dotted `path`: object keys and array indexes separated by
   * `.`, such as `ra`, `event.classification.BNS` or `id.0`. The empty path
   * is the whole document. `undefined` when nothing is there (a JSON `null`
   * that is there is `null`).
   */
  get(path) {
    if (path === '') return this.value;
    let value = this.value;
    for (const segment of path.split('.')) {
      if (Array.isArray(value)) {
        if (!/^[0-9]+$/.test(segment) || Number(segment) >= value.length) return undefined;
        value = value[Number(segment)];
      } else if (value !== null && typeof value === 'object') {
        if (!Object.hasOwn(value, segment)) return undefined;
        value = value[segment];
      } else {
        return undefined;
      }
    }
    return value;
  }

  /** The string at `path`; `null` when absent or not a string. */
  str(path) {
    const value = this.get(path);
    return typeof value === 'string' ? value : null;
  }

  /** The number at `path`; `null` when absent or not a number (a numeric
   * string is not converted). */
  number(path) {
    const value = this.get(path);
    return typeof value === 'number' ? value : null;
  }
}

// ------------------------------------------------------------- classic

/**
 * The `KEY: value` pairs of a GCN classic text notice, as `[key, value]`
 * arrays in order, keys as written and values trimmed. A key may repeat
 * (`COMMENTS:` does). A line that starts with whitespace, or has no `KEY:`
 * prefix, continues the previous value after one space. Blank lines and
 * anything before the first key are skipped. Invalid UTF-8 becomes U+FFFD.
 */
export function classicTextPairs(bytes) {
  // ignoreBOM keeps a byte-order mark as U+FEFF, as Rust's lossy decoding does.
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(toBytes(bytes));
  const pairs = [];
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const content = trim(line);
    if (!content) continue;
    const colon = line.indexOf(':');
    const key = colon < 0 ? '' : line.slice(0, colon);
    if (colon >= 0 && !WHITESPACE.has(line.charCodeAt(0)) && KEY.test(key)) {
      pairs.push([key, trim(line.slice(colon + 1))]);
    } else if (pairs.length) {
      const last = pairs.at(-1);
      last[1] = last[1] ? `${last[1]} ${content}` : content;
    }
  }
  return pairs;
}

/**
 * A GCN classic binary packet: 160 bytes read as 40 big-endian signed 32-bit
 * words. The meaning of most words depends on the packet type (GCN's socket
 * packet definitions); the getters cover the words that mean the same in the
 * common notice types.
 */
export class ClassicBinary {
  constructor(words) {
    /** The 40 words, in packet order. */
    this.words = Array.from(words);
  }

  /** Read a packet; a `PayloadError` when `bytes` is not exactly 160 bytes long. */
  static parse(bytes) {
    bytes = toBytes(bytes);
    if (bytes.length !== CLASSIC_PACKET_LEN) {
      throw new PayloadError(
        Format.CLASSIC_BINARY,
        `a packet is ${CLASSIC_PACKET_LEN} bytes, this payload is ${bytes.length}`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new ClassicBinary(Array.from({ length: 40 }, (_, i) => view.getInt32(i * 4, false)));
  }

  /** Word `i` (0 to 39); `null` past the end. */
  word(i) {
    return i >= 0 && i < this.words.length ? this.words[i] : null;
  }

  /** GCN's notice type number (word 0): 61 for `SWIFT_BAT_GRB_POS_ACK`,
   * 131 for `FERMI_GBM_SUBTHRESH`. */
  get packetType() {
    return this.words[0];
  }

  /** The trigger or observation number (word 4) in most notice types. */
  get triggerNumber() {
    return this.words[4];
  }

  /** Truncated Julian Day of the event (word 5). */
  get burstTjd() {
    return this.words[5];
  }

  /** Seconds of day (UTC) of the event (word 6, in centiseconds). */
  get burstSod() {
    return this.words[6] / 100;
  }

  /** The event time in milliseconds since the Unix epoch (TJD 0 is MJD
   * 40000, the Unix epoch MJD 40587). */
  get burstUnixMillis() {
    return (this.burstTjd - 587) * 86400000 + this.words[6] * 10;
  }
}
