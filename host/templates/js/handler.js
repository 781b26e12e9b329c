// {{name}}: an alerthost handler. It saves the messages whose payload format
// is one of `formats` and drops every other message.
//
// Parameters:
// - `formats`: comma-separated payload formats to save, from `voevent`,
//   `json`, `classic-text` and `classic-binary`; default `voevent,json`.
//
// Build: `./build.sh` (the component is `dist/{{name}}.wasm`). Test natively:
// `node --test`.

import { debug, payload, save } from './alerthost/index.js';

const FORMATS = Object.values(payload.Format).filter((f) => f !== payload.Format.UNKNOWN);

let formats = [payload.Format.VOEVENT, payload.Format.JSON];

export function init(params) {
  const names = params.get('formats', 'voevent,json').split(',').map((name) => name.trim());
  for (const name of names) {
    if (!FORMATS.includes(name)) {
      throw new Error(`parameter \`formats\`: unknown format \`${name}\`; use voevent, json, classic-text or classic-binary`);
    }
  }
  formats = names;
}

export function handle(msg) {
  const format = payload.detect(msg.value);
  if (formats.includes(format)) return save();
  debug(`${format} dropped`);
  return [];
}
