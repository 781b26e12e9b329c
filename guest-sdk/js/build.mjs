#!/usr/bin/env node
// Build a JavaScript handler module into an alerthost component with
// componentize-js (its API: the `jco componentize` CLI fails on some
// machines).
//
//   node build.mjs HANDLER.js OUT.wasm [--wit DIR]
//
// The handler exports `handle` (and optionally `init`) or a class `Handler`;
// see src/index.js. componentize-js is taken from $ALERTHOST_JS_NODE_MODULES
// when it is set, else from a node_modules next to (or above) this file. The WIT comes from
// --wit, $ALERTHOST_WIT, wit/ next to this file or its parent (a project
// that vendors the SDK in alerthost/), or the repository's wit/.
//
// The component imports the host's `state` interface only when the handler
// uses it: when no .js or .mjs file of the handler's directory imports
// `state` from the SDK (or calls `state.get(`, `state.set(`,
// `state.delete(`), it is built against the world without its
// `import state;` line (componentize-js imports every function of the world
// it is given, used or not), so it also loads where no state is offered.
//
// WASI features the handler world has no use for are disabled: `http` and
// `fetch-event` would make the component import wasi:http, which alerthost
// refuses.
//
// The same sources give the same component: componentize-js snapshots an
// initialised SpiderMonkey whose heap depends on random numbers and clocks
// read at build time, so two builds of one source differ in bytes. A build
// whose inputs (the handler directory's .js, .mjs and .json files, the SDK,
// the WIT and componentize-js's version) match those recorded in
// OUT.wasm.inputs, and whose OUT.wasm is the one recorded, leaves it as it
// is: the host then sees the same version and reuses its compiled code.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  console.error(`${message}\nusage: node build.mjs HANDLER.js OUT.wasm [--wit DIR]`);
  process.exit(2);
}

const args = process.argv.slice(2);
let wit = process.env.ALERTHOST_WIT;
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--wit') wit = args[++i];
  else positional.push(args[i]);
}
if (positional.length !== 2) usage('expected a handler module and an output file');
const [handlerPath, outPath] = positional.map((p) => resolve(p));
if (!existsSync(handlerPath)) usage(`no handler module at ${handlerPath}`);
wit ??= [join(here, 'wit'), join(here, '..', 'wit'), join(here, '..', '..', 'wit')].find((dir) =>
  existsSync(join(dir, 'handler.wit')),
);
// The SDK's glue: in src/ here, next to this file where a project vendors it.
const glue = [join(here, 'src', 'component.js'), join(here, 'component.js')].find((f) => existsSync(f));
if (!wit) usage('no WIT found: pass --wit DIR or set ALERTHOST_WIT');

async function loadComponentizeJs() {
  const modules = process.env.ALERTHOST_JS_NODE_MODULES;
  if (modules) {
    const root = join(modules, '@bytecodealliance', 'componentize-js');
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    return { version, ...(await import(pathToFileURL(join(root, 'src', 'componentize.js')).href)) };
  }
  try {
    const module = await import('@bytecodealliance/componentize-js');
    // The package exports no package.json: find it above its entry point.
    let dir = dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/componentize-js')));
    while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
    return { version: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version, ...module };
  } catch (e) {
    console.error(
      'componentize-js is not installed: run `npm install` next to build.mjs ' +
        '(or scripts/guest-toolchains.sh in the alerthost repository), ' +
        'or set ALERTHOST_JS_NODE_MODULES to a node_modules that has it',
    );
    throw e;
  }
}

/** Every file under `dir` whose name ends with one of `extensions`, sorted,
 * skipping build output, dependencies and hidden entries. */
function sources(dir, extensions) {
  const found = [];
  const walk = (sub) => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const path = sub ? `${sub}/${entry.name}` : entry.name;
      if (entry.name.startsWith('.') || ['node_modules', 'dist'].includes(entry.name)) continue;
      if (entry.isDirectory()) walk(path);
      else if (extensions.some((ext) => entry.name.endsWith(ext))) found.push(path);
    }
  };
  walk('');
  return found.sort();
}

/** A hash of what the component is built from (paths relative to their
 * directories, so a moved project keeps its record). */
function fingerprint(version) {
  const hash = createHash('sha256');
  hash.update(`componentize-js ${version}\n`);
  const add = (dir, files) => {
    for (const file of files) {
      hash.update(`${file}\n`);
      hash.update(createHash('sha256').update(readFileSync(join(dir, file))).digest('hex'));
    }
  };
  add(dirname(handlerPath), sources(dirname(handlerPath), ['.js', '.mjs', '.json']));
  add(dirname(glue), sources(dirname(glue), ['.js']));
  add(wit, sources(wit, ['.wit']));
  return hash.digest('hex');
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

const { componentize, version } = await loadComponentizeJs();
const inputs = fingerprint(version);
const record = `${outPath}.inputs`;
if (existsSync(outPath) && existsSync(record)) {
  if (readFileSync(record, 'utf8').trim() === `${inputs} ${sha256(readFileSync(outPath))}`) {
    console.error(`unchanged ${outPath} (same inputs as its build)`);
    process.exit(0);
  }
}

/** Whether the handler's sources use the SDK's `state`. */
function usesState() {
  const dir = dirname(handlerPath);
  const pattern = /import\s*\{[^}]*\bstate\b[^}]*\}\s*from|\bstate\s*\.\s*(get|set|delete)\s*\(/;
  return sources(dir, ['.js', '.mjs']).some((file) => pattern.test(readFileSync(join(dir, file), 'utf8')));
}
const withState = usesState();

// componentize-js takes one module whose exports are the world's: write an
// entry next to the handler (imports are resolved relative to it) that wires
// the handler to the SDK's glue.
// A fixed name: the path ends up in the component, and the same sources
// should give the same bytes (the host caches compiled code by hash).
const work = join(dirname(handlerPath), '.alerthost-build');
await rm(work, { recursive: true, force: true });
await mkdir(work);
const importPath = (target) => {
  const rel = relative(work, target).split(sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
};
const entry = join(work, 'entry.js');
const stateGlue = join(dirname(glue), 'state-host.js');
await writeFile(
  entry,
  `import * as handler from ${JSON.stringify(importPath(handlerPath))};
import { component } from ${JSON.stringify(importPath(glue))};
${
  withState
    ? `import { hostState } from ${JSON.stringify(importPath(stateGlue))};
const exported = component(handler, hostState);`
    : 'const exported = component(handler);'
}
export function init(params) {
  return exported.init(params);
}
export function handle(msg) {
  return exported.handle(msg);
}
`,
);
// componentize-js lets the component's modules see only the working
// directory (when the entry is inside it): work from the deepest directory
// that holds both the handler and this SDK.
const common = (a, b) => {
  const [x, y] = [a.split(sep), b.split(sep)];
  let k = 0;
  while (k < x.length && k < y.length && x[k] === y[k]) k++;
  return x.slice(0, k).join(sep) || sep;
};
process.chdir(common(dirname(handlerPath), here));
let worldWit = wit;
if (!withState) {
  // A handler without state: the same world less its state import.
  worldWit = join(work, 'wit');
  await cp(wit, worldWit, { recursive: true });
  for (const file of readdirSync(worldWit).filter((f) => f.endsWith('.wit'))) {
    const text = await readFile(join(worldWit, file), 'utf8');
    await writeFile(join(worldWit, file), text.replace(/^[ \t]*import[ \t]+state[ \t]*;[ \t]*\r?\n/gm, ''));
  }
}
try {
  const { component } = await componentize({
    sourcePath: entry,
    witPath: worldWit,
    worldName: 'handler',
    disableFeatures: ['http', 'fetch-event'],
  });
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, component);
  await writeFile(record, `${inputs} ${sha256(component)}\n`);
  console.error(`built ${outPath} (${component.length} bytes)`);
} finally {
  await rm(work, { recursive: true, force: true });
}
