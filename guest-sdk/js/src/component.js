// Glue between componentize-js's bindings of the `alerthost:handler` world
// and the SDK's plain types. Imported only by the entry module that
// `build.mjs` writes; `log` (the world's host import) exists only inside a
// component.

import log from 'log';

import { HandlerError, Message, Params, actionsOf, load, setLogSink } from './index.js';
import { setBackend } from './state.js';

/** `state` in a component built without the host's state interface: every
 * call is a bug that says how to fix the build. */
const noState = new Proxy(
  {},
  {
    get() {
      return () => {
        throw new Error(
          "this component was built without the host's state interface: build.mjs found " +
            'no use of `state` in the handler\'s sources; import `state` from the SDK there and rebuild',
        );
      };
    },
  },
);

const some = (value) => (value === null || value === undefined ? undefined : value);

function fromWit(msg) {
  const ts = msg.timestamp;
  return new Message(msg.topic, msg.value, {
    partition: msg.partition,
    offset: Number(msg.offset),
    timestamp: ts ? { millis: Number(ts.millis), kind: ts.kind } : null,
    key: msg.key ?? null,
    headers: msg.headers.map((h) => ({ name: h.name, value: h.value ?? null })),
  });
}

function toWit(action) {
  if (action.kind === 'save') {
    return { tag: 'save', val: { name: some(action.name), value: some(action.value) } };
  }
  return {
    tag: 'forward',
    val: {
      sink: action.sink,
      key: some(action.key),
      value: some(action.value),
      headers: action.headers ? action.headers.map((h) => ({ name: h.name, value: some(h.value) })) : undefined,
    },
  };
}

/**
 * The world's `init` and `handle` exports for the handler of `module` (see
 * `load` in index.js). `stateBackend` is the host's `state` (state-host.js)
 * when the component was built with it.
 */
export function component(module, stateBackend = null) {
  const build = load(module);
  setLogSink((level, text) => log(level, text));
  setBackend(stateBackend ?? noState);
  let handleOne = null;
  return {
    init(params) {
      try {
        handleOne = build(new Params(params));
      } catch (e) {
        // `result<_, string>`: a thrown string is the error.
        throw e instanceof Error && e.constructor === Error ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
      }
    },
    handle(msg) {
      if (!handleOne) throw { tag: 'fatal', val: 'handle called before init' };
      let result;
      try {
        result = handleOne(fromWit(msg));
      } catch (e) {
        if (e instanceof HandlerError) throw { tag: e.kind, val: e.text };
        // A bug: say what it was, then trap (the host applies the error policy).
        log('error', `handle threw ${e?.name ?? typeof e}: ${e?.message ?? e}${e?.stack ? `\n${e.stack}` : ''}`);
        throw e;
      }
      return actionsOf(result).map(toWit);
    },
  };
}
