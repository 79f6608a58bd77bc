// Exercises hearth through OpenWhisk's JavaScript client library, unchanged: create, get,
// list, invoke (blocking, result-only, non-blocking), activations and delete, for a Python and
// a Node.js action. Exits non-zero with a message on the first mismatch.
'use strict';
const assert = require('assert');
const openwhisk = require('openwhisk');

const ow = openwhisk({
  apihost: process.env.HEARTH_APIHOST,
  api_key: process.env.HEARTH_AUTH,
  ignore_certs: true,
});

const actions = [
  { name: 'owjs-py', kind: 'python:3',
    code: 'def main(args):\n    print("hi from python")\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n' },
  { name: 'owjs-js', kind: 'nodejs:20',
    code: 'function main(params) { console.log("hi from node"); return {greeting: "Hello " + (params.name || "stranger")}; }' },
];

async function waitFor(id) {
  for (let i = 0; i < 200; i++) {
    try { return await ow.activations.get({ name: id }); } catch (e) {
      if (e.statusCode !== 404) throw e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`activation ${id} never appeared`);
}

(async () => {
  for (const a of actions) {
    await ow.actions.create({ name: a.name, action: { exec: { kind: a.kind, code: a.code } }, overwrite: true });
    const got = await ow.actions.get({ name: a.name });
    assert.strictEqual(got.name, a.name);
    assert.strictEqual(got.exec.kind, a.kind);
    const list = await ow.actions.list();
    assert.ok(list.some((x) => x.name === a.name), 'listed');

    const full = await ow.actions.invoke({ name: a.name, blocking: true, params: { name: 'Ada' } });
    assert.strictEqual(full.response.success, true, JSON.stringify(full));
    assert.deepStrictEqual(full.response.result, { greeting: 'Hello Ada' });

    const result = await ow.actions.invoke({ name: a.name, blocking: true, result: true, params: { name: 'Grace' } });
    assert.deepStrictEqual(result, { greeting: 'Hello Grace' });

    const nb = await ow.actions.invoke({ name: a.name });
    assert.match(nb.activationId, /^[0-9a-f]{32}$/);
    const rec = await waitFor(nb.activationId);
    assert.strictEqual(rec.name, a.name);
    assert.deepStrictEqual(rec.response.result, { greeting: 'Hello stranger' });
    const logs = await ow.activations.logs({ name: nb.activationId });
    assert.ok(logs.logs.some((l) => l.includes('hi from')), JSON.stringify(logs));
    const res = await ow.activations.result({ name: nb.activationId });
    assert.deepStrictEqual(res.result, { greeting: 'Hello stranger' });

    const acts = await ow.activations.list({ name: a.name, limit: 5 });
    assert.ok(acts.length >= 1);

    await ow.actions.delete({ name: a.name });
    await assert.rejects(ow.actions.get({ name: a.name }), (e) => e.statusCode === 404);
  }
  const ns = await ow.namespaces.list();
  assert.ok(Array.isArray(ns) && ns.length >= 1, JSON.stringify(ns));
  console.log('openwhisk client: all checks passed');
})().catch((e) => {
  console.error('openwhisk client check failed:', e && (e.stack || e.message || e));
  process.exit(1);
});
