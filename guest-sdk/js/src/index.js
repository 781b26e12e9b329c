// alerthost: write alerthost message handlers in JavaScript.
//
// A handler is an ES module (`handler.js`) that exports either functions
//
//     export function init(params) { ... }      // optional
//     export function handle(msg) { return save(); }
//
// or a class named `Handler`:
//
//     export class Handler {
//       constructor(params) { ... }
//       handle(msg) { ... }
//     }
//
// `handle` returns an array of actions (`save()` / `forward(sink)`), one
// action, or nothing to drop the message, and throws `BadRecord`,
// `Transient` or `Fatal` when it cannot decide. `init` (or the constructor)
// refuses the handler by throwing an `Error`. Any other exception is a bug:
// inside a component it traps, and the host applies the error policy.
//
// Everything here is plain JavaScript with no dependencies, so a handler is
// tested under Node with `node --test`. `payload` reads the formats GCN alerts
// come in; `state` remembers across messages, with an in-memory stand-in in
// `testing` for tests under Node. `build.mjs` (next to `src/`) turns a
// handler into a component.

import * as payload from './payload.js';
import { parseF64, toBytes } from './payload.js';
import * as state from './state.js';
import * as testing from './testing.js';

export { payload, state, testing, toBytes };

/** The version of the `alerthost:handler` WIT package this SDK targets. */
export const WIT_VERSION = '0.2.0';

/**
 * One Kafka message, as the host hands it to the handler. Offsets and
 * timestamps are JavaScript numbers (exact below 2^53).
 *
 * `new Message('topic', bytesOrString)` builds one for a test: partition 0,
 * offset 0, no key, timestamp or headers.
 */
export class Message {
  constructor(topic, value, { partition = 0, offset = 0, timestamp = null, key = null, headers = [] } = {}) {
    /** Topic the message was read from. */
    this.topic = topic;
    /** Payload bytes (Uint8Array), exactly as they arrived. */
    this.value = toBytes(value);
    /** Partition within the topic. */
    this.partition = partition;
    /** Offset within the partition. */
    this.offset = offset;
    /** `{millis, kind}` with kind `'create-time'` or `'log-append-time'`, or `null`. */
    this.timestamp = timestamp;
    /** Key bytes, or `null`. */
    this.key = key === null ? null : toBytes(key);
    /** Headers, `{name, value}` with value bytes or `null`, in order. */
    this.headers = headers.map(header);
  }

  /** The value of the first header named `name`; `null` when absent. */
  header(name) {
    const h = this.headers.find((h) => h.name === name);
    return h ? h.value : null;
  }

  /** The payload as text (UTF-8, invalid bytes replaced). */
  text() {
    return new TextDecoder().decode(this.value);
  }
}

/** A header `{name, value}` from an object or a `[name, value]` pair. */
export function header(h) {
  const [name, value] = Array.isArray(h) ? h : [h.name, h.value];
  return { name: String(name), value: value === null || value === undefined ? null : toBytes(value) };
}

/**
 * Save the message value (or `value`) to the handler's save sink. `name` is a
 * file name hint; the host sanitizes it and keeps it inside the sink's
 * directory. Without it, the host names the file after topic, partition and
 * offset, so a redelivered message overwrites its own file.
 */
export function save({ name = null, value = null } = {}) {
  return { kind: 'save', name, value: value === null ? null : toBytes(value) };
}

/**
 * Forward the message (or a replacement `value`, `key` or `headers`) to the
 * sink named `sink`, which the operator must have allowed this handler.
 */
export function forward(sink, { value = null, key = null, headers = null } = {}) {
  return {
    kind: 'forward',
    sink: String(sink),
    key: key === null ? null : toBytes(key),
    value: value === null ? null : toBytes(value),
    headers: headers === null ? null : headers.map(header),
  };
}

/** Why a handler could not decide on a message; the kind picks the
 * operator's error policy. Throw one of the subclasses. */
export class HandlerError extends Error {
  constructor(kind, text) {
    super(`${kind}: ${text}`);
    this.name = 'HandlerError';
    /** `'bad-record'`, `'transient'` or `'fatal'`. */
    this.kind = kind;
    /** What is wrong. */
    this.text = String(text);
  }
}

/** The message is malformed or unexpected; retrying will not help. */
export class BadRecord extends HandlerError {
  constructor(text) {
    super('bad-record', text);
    this.name = 'BadRecord';
  }
}

/** A passing failure; the same message may succeed later. */
export class Transient extends HandlerError {
  constructor(text) {
    super('transient', text);
    this.name = 'Transient';
  }
}

/** The handler cannot go on. */
export class Fatal extends HandlerError {
  constructor(text) {
    super('fatal', text);
    this.name = 'Fatal';
  }
}

/**
 * The operator's parameters for a handler, in the order given. Built from
 * `[key, value]` pairs or an object. Lookups see the last value when a key
 * is given twice. Errors name the key, so throwing them from `init` refuses
 * the handler with a clear message.
 */
export class Params {
  constructor(pairs = []) {
    const list = Array.isArray(pairs) ? pairs : Object.entries(pairs);
    this.pairs = list.map(([k, v]) => [String(k), String(v)]);
  }

  /** Every key, in the order given (repeated keys repeat). */
  keys() {
    return this.pairs.map(([k]) => k);
  }

  /** The value of `key`, or `fallback` (default `null`). */
  get(key, fallback = null) {
    for (let i = this.pairs.length - 1; i >= 0; i--) if (this.pairs[i][0] === key) return this.pairs[i][1];
    return fallback;
  }

  /** The value of `key`; throws when it is missing. */
  require(key) {
    const value = this.get(key);
    if (value === null) throw new Error(`missing parameter \`${key}\``);
    return value;
  }

  /** `key` as a number; `fallback` when absent (throws when absent without
   * one, or when the value does not parse). */
  number(key, fallback) {
    const raw = this.get(key);
    if (raw === null) {
      if (fallback === undefined) throw new Error(`missing parameter \`${key}\``);
      return fallback;
    }
    const value = parseF64(raw);
    if (value === null) throw new Error(`parameter \`${key}\` = ${JSON.stringify(raw)} is not valid: not a number`);
    return value;
  }

  /** `key` as an integer; `fallback` when absent (throws when absent without
   * one, or when the value is not an integer). */
  integer(key, fallback) {
    const raw = this.get(key);
    if (raw === null) {
      if (fallback === undefined) throw new Error(`missing parameter \`${key}\``);
      return fallback;
    }
    if (!/^[+-]?[0-9]+$/.test(raw.trim())) {
      throw new Error(`parameter \`${key}\` = ${JSON.stringify(raw)} is not valid: not an integer`);
    }
    return Number(raw.trim());
  }
}

/** Log levels, lowest first. */
export const LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error']);

// Inside a component the glue replaces this with the host's `log` import.
let logSink = (level, text) => console.error(`[${level}] ${text}`);

/** Where log lines go; the component glue points it at the host. */
export function setLogSink(sink) {
  logSink = sink;
}

/** Write one line to the host's log (capped per message by the host).
 * Under Node it goes to standard error. */
export function log(level, text) {
  if (!LEVELS.includes(level)) throw new Error(`log level ${JSON.stringify(level)} is not one of ${LEVELS.join(', ')}`);
  logSink(level, String(text));
}

/** Write a trace line. */
export const trace = (text) => log('trace', text);
/** Write a debug line. */
export const debug = (text) => log('debug', text);
/** Write an info line. */
export const info = (text) => log('info', text);
/** Write a warning. */
export const warn = (text) => log('warn', text);
/** Write an error line. */
export const error = (text) => log('error', text);

const isAction = (a) => a !== null && typeof a === 'object' && (a.kind === 'save' || a.kind === 'forward');

/** What a `handle` returned, as an array of actions: nothing is none, one
 * action is an array of one. Anything else throws a `TypeError`. */
export function actionsOf(result) {
  if (result === undefined || result === null) return [];
  if (isAction(result)) return [result];
  if (!Array.isArray(result)) {
    throw new TypeError(`handle returned ${typeof result}; expected save()/forward() actions, an array of them, or nothing`);
  }
  for (const action of result) {
    if (!isAction(action)) throw new TypeError('handle returned something other than save()/forward() among its actions');
  }
  return result;
}

/**
 * How to build the handler of `module`: a function of the parameters that
 * returns the per-message function. `module` exports a class `Handler` or a
 * function `handle` (with an optional `init`).
 */
export function load(module) {
  const Handler = module.Handler;
  if (typeof Handler === 'function' && typeof Handler.prototype?.handle === 'function') {
    return (params) => {
      const instance = new Handler(params);
      return (msg) => instance.handle(msg);
    };
  }
  if (typeof module.handle !== 'function') {
    throw new TypeError('the handler module exports neither a class Handler (with handle) nor a function handle(msg)');
  }
  return (params) => {
    if (typeof module.init === 'function') module.init(params);
    return module.handle;
  };
}

/** Build `module`'s handler with `params` and run it on one message: the
 * array of actions it returns. For tests and quick checks. */
export function run(module, msg, params = []) {
  return actionsOf(load(module)(params instanceof Params ? params : new Params(params))(msg));
}
