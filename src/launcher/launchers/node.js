// hearth's Node.js launcher: the action-loop protocol inside a container.
//
// One JSON line in on stdin, one JSON line out on fd 3. The first message is an init
// ({"op": "init", action, entry_point, binary}), answered {"ok": true} or {"error": msg};
// every later one is a run ({"op": "run", value, env}), answered with what main returned
// (awaited when it is a Promise). Sentinel lines go to stdout and stderr BEFORE each reply so
// that the host knows the activation's log lines are complete when it reads the reply.
//
// Concurrent mode (the init carries "concurrency" above 1, an action's limits.concurrency):
// runs are handled as they arrive, not one after another; each run message carries an "id"
// the host picked and its reply line is `<id> <result>`. Each run executes inside an
// AsyncLocalStorage store holding its id and its __OW_ values: every line it writes to
// stdout or stderr (console.* included) is prefixed with TAG + id + ' ', a partial line is
// held per run until its newline or the run's end, and the run's end is TAG + id + ' ' +
// SENTINEL on both streams, before its reply. Lines written outside any run (a timer an
// ended run left behind) go out untagged; the host hands them to the next run that ends.
// process.env is a Proxy that answers a run's own __OW_ values first, even across awaits.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');
const Module = require('module');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';
const CODE_DIR = '/action';
const REPLY_FD = 3;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
// Starts a tagged log line in concurrent mode (ASCII SOH: never in ordinary text output).
const TAG = '\u0001';

let action = null;
let setEnv = new Set();

// The reply fd is a blocking pipe that libuv never touches; EAGAIN is retried all the same in
// case the host made it non-blocking.
function writeAll(fd, text) {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') {
        throw e;
      }
    }
  }
}

function endOfActivation(reply) {
  // Writes to pipes are synchronous in Node on Linux, so everything console.log wrote is in
  // the pipe before the sentinel, and the sentinel is in before the reply.
  process.stdout.write(SENTINEL);
  process.stderr.write(SENTINEL);
  writeAll(REPLY_FD, reply + '\n');
}

function encode(value) {
  try {
    const s = JSON.stringify(value);
    // undefined (no return) serialises to nothing: report it as the null it is.
    return s === undefined ? 'null' : s;
  } catch (e) {
    return JSON.stringify({ error: 'The action returned a value that is not JSON: ' + e.message });
  }
}

function errorMessage(e) {
  if (e instanceof Error) {
    return e.name + ': ' + e.message;
  }
  return e;
}

// Plain OpenWhisk-style source: a top-level `function main` with no exports. The source is
// compiled as a CommonJS module body with a trailer that exports the entry point when the
// source did not.
function loadSource(entry) {
  const file = path.join(CODE_DIR, 'index.js');
  const source = fs.readFileSync(file, 'utf8');
  const trailer = IDENTIFIER.test(entry)
    ? `\n;if (typeof module.exports[${JSON.stringify(entry)}] !== 'function' && typeof ${entry} === 'function') { module.exports[${JSON.stringify(entry)}] = ${entry}; }`
    : '';
  const wrapper =
    '(function (exports, require, module, __filename, __dirname) {' + source + trailer + '\n})';
  const fn = vm.runInThisContext(wrapper, { filename: file });
  const mod = { exports: {} };
  fn.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, CODE_DIR);
  return mod.exports;
}

// A zip: package.json's "main", else index.js, loaded with require.
function loadPackage() {
  let main = 'index.js';
  const pkg = path.join(CODE_DIR, 'package.json');
  if (fs.existsSync(pkg)) {
    const parsed = JSON.parse(fs.readFileSync(pkg, 'utf8'));
    if (parsed && typeof parsed.main === 'string') {
      main = parsed.main;
    }
  }
  return require(path.resolve(CODE_DIR, main));
}

function init(msg) {
  const entry = msg.entry_point || 'main';
  const exports = msg.binary ? loadPackage() : loadSource(entry);
  const fn = exports && (typeof exports === 'function' && entry === 'main' ? exports : exports[entry]);
  if (typeof fn !== 'function') {
    throw new Error('the action has no function ' + JSON.stringify(entry));
  }
  action = fn;
  if (Number.isInteger(msg.concurrency) && msg.concurrency > 1) {
    startConcurrent();
  }
}

async function run(msg) {
  const fresh = new Set();
  for (const [k, v] of Object.entries(msg.env || {})) {
    const name = '__OW_' + k;
    process.env[name] = String(v);
    fresh.add(name);
  }
  for (const name of setEnv) {
    if (!fresh.has(name)) {
      delete process.env[name];
    }
  }
  setEnv = fresh;
  return callAction(msg);
}

// main on the run's parameters, awaited; an exception is the activation's error.
async function callAction(msg) {
  if (action === null) {
    return { error: 'the action was not initialized' };
  }
  try {
    return await action(msg.value || {});
  } catch (e) {
    console.error(e instanceof Error && e.stack ? e.stack : e);
    return { error: errorMessage(e) };
  }
}

// ---- Concurrent mode -------------------------------------------------------------------

let concurrent = false;
let store = null;
// The original writers, for the untagged output and the end markers.
const rawOut = process.stdout.write.bind(process.stdout);
const rawErr = process.stderr.write.bind(process.stderr);
// A run's unfinished line per stream: id -> text.
const partials = [new Map(), new Map()];

// A write function for one stream that tags the lines written inside a run.
function taggedWriter(index, raw) {
  return function write(chunk, encoding, cb) {
    const ctx = store.getStore();
    if (ctx === undefined) {
      return raw(chunk, encoding, cb);
    }
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const text =
      typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const held = partials[index];
    const all = (held.get(ctx.id) || '') + text;
    const last = all.lastIndexOf('\n');
    if (last < 0) {
      held.set(ctx.id, all);
      if (cb) process.nextTick(cb);
      return true;
    }
    if (last + 1 < all.length) {
      held.set(ctx.id, all.slice(last + 1));
    } else {
      held.delete(ctx.id);
    }
    const prefix = TAG + ctx.id + ' ';
    const lines = all.slice(0, last).split('\n');
    return raw(prefix + lines.join('\n' + prefix) + '\n', 'utf8', cb);
  };
}

// The end of run `id` on both streams: its unfinished lines, then its end marker.
function endOfConcurrentRun(id) {
  const prefix = TAG + id + ' ';
  const raws = [rawOut, rawErr];
  for (let i = 0; i < 2; i++) {
    const rest = partials[i].get(id);
    partials[i].delete(id);
    raws[i]((rest === undefined ? '' : prefix + rest + '\n') + prefix + SENTINEL);
  }
}

function startConcurrent() {
  const { AsyncLocalStorage } = require('node:async_hooks');
  store = new AsyncLocalStorage();
  concurrent = true;
  process.stdout.write = taggedWriter(0, rawOut);
  process.stderr.write = taggedWriter(1, rawErr);
  // A run's own __OW_ values first: the real environment is shared by every run in flight.
  const real = process.env;
  const own = (key) => {
    const ctx = store.getStore();
    return ctx !== undefined && typeof key === 'string' && Object.prototype.hasOwnProperty.call(ctx.env, key)
      ? ctx.env
      : null;
  };
  process.env = new Proxy(real, {
    get(target, key) {
      const env = own(key);
      return env !== null ? env[key] : Reflect.get(target, key);
    },
    has(target, key) {
      return own(key) !== null || Reflect.has(target, key);
    },
    ownKeys(target) {
      const ctx = store.getStore();
      const keys = Reflect.ownKeys(target);
      if (ctx === undefined) {
        return keys;
      }
      return [...new Set([...keys, ...Object.keys(ctx.env)])];
    },
    getOwnPropertyDescriptor(target, key) {
      const env = own(key);
      if (env !== null) {
        return { value: env[key], writable: true, enumerable: true, configurable: true };
      }
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
  });
}


function handleConcurrent(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    rawErr('bad message in concurrent mode: ' + e.message + '\n');
    return;
  }
  const id = msg.id;
  if (msg.op !== 'run' || !Number.isInteger(id)) {
    rawErr('unexpected message in concurrent mode: ' + JSON.stringify(msg.op) + '\n');
    return;
  }
  const env = {};
  for (const [k, v] of Object.entries(msg.env || {})) {
    env['__OW_' + k] = String(v);
  }
  store.run({ id, env }, () => {
    callAction(msg).then((result) => {
      endOfConcurrentRun(id);
      writeAll(REPLY_FD, id + ' ' + encode(result) + '\n');
    });
  });
}

async function handle(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    endOfActivation(encode({ error: 'bad message: ' + e.message }));
    return;
  }
  if (msg.op === 'init') {
    try {
      init(msg);
      endOfActivation('{"ok":true}');
    } catch (e) {
      console.error(e instanceof Error && e.stack ? e.stack : e);
      endOfActivation(encode({ error: errorMessage(e) }));
    }
  } else if (msg.op === 'run') {
    endOfActivation(encode(await run(msg)));
  } else {
    endOfActivation(encode({ error: 'unknown op ' + JSON.stringify(msg.op) }));
  }
}

// Warm-up, paid at the launcher's start (before a prewarmed container is taken) rather than
// in the first init: process.stdout and process.stderr are created on first use (a pipe
// stream each), and the first vm compile and createRequire set up their own machinery.
// It more than halves the first init's reply (BENCHMARKS.md, "Design measurements"). Empty
// writes put nothing in the pipes.
process.stdout.write('');
process.stderr.write('');
writeAll(REPLY_FD, '');
vm.runInThisContext('(function () {})', { filename: path.join(CODE_DIR, 'warmup.js') });
Module.createRequire(path.join(CODE_DIR, 'index.js'));
JSON.stringify(JSON.parse('{"a":[1]}'));

// Messages are handled one after another, in order, even when a chunk holds several lines;
// in concurrent mode runs start as they arrive (the init before them was answered already).
let pending = '';
let queue = Promise.resolve();
const input = fs.createReadStream(null, { fd: 0, encoding: 'utf8', highWaterMark: 1 << 16 });
input.on('data', (chunk) => {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (concurrent) {
      handleConcurrent(line);
    } else {
      queue = queue.then(() => handle(line));
    }
  }
});
input.on('end', () => process.exit(0));
