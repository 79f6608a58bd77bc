// Exercises hearth through OpenWhisk's JavaScript client library, unchanged: create, get,
// list, invoke (blocking, result-only, non-blocking), activations and delete, for a Python and
// a Node.js action; packages (create, get, update, list, delete), an action inside a package,
// a binding with its merged parameters, and the whisk.system catalog. Exits non-zero with a
// message on the first mismatch.
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

async function packages() {
  const kv = (o) => Object.entries(o).map(([key, value]) => ({ key, value }));
  const pkg = 'owjs-pkg';
  const created = await ow.packages.create({ name: pkg, package: { parameters: kv({ a: 'package', b: 'package', c: 'package' }) } });
  assert.strictEqual(created.version, '0.0.1', JSON.stringify(created));
  const updated = await ow.packages.update({ name: pkg, package: { publish: true } });
  assert.strictEqual(updated.version, '0.0.2');
  assert.strictEqual(updated.publish, true);
  const code = 'function main(params) { return params; }';
  const act = await ow.actions.create({ name: `${pkg}/show`, action: { exec: { kind: 'nodejs:default', code }, parameters: kv({ c: 'action' }) } });
  assert.strictEqual(act.exec.code, code, 'the PUT answer carries the code');
  assert.strictEqual(act.exec.kind, 'nodejs:20', 'nodejs:default is stored concrete');
  const got = await ow.packages.get({ name: pkg });
  assert.deepStrictEqual(got.actions.map((a) => a.name), ['show']);
  const listed = await ow.packages.list();
  assert.ok(listed.some((p) => p.name === pkg), JSON.stringify(listed));

  const direct = await ow.actions.invoke({ name: `${pkg}/show`, blocking: true, result: true, params: { d: 'request' } });
  assert.deepStrictEqual(direct, { a: 'package', b: 'package', c: 'action', d: 'request' });

  await ow.packages.create({ name: 'owjs-bind', package: { binding: { namespace: '_', name: pkg }, parameters: kv({ b: 'binding', c: 'binding' }) } });
  const bound = await ow.actions.invoke({ name: 'owjs-bind/show', blocking: true });
  assert.deepStrictEqual(bound.response.result, { a: 'package', b: 'binding', c: 'action' });
  const ann = Object.fromEntries(bound.annotations.map((x) => [x.key, x.value]));
  assert.strictEqual(ann.path, `guest/${pkg}/show`);
  assert.strictEqual(ann.binding, 'guest/owjs-bind');

  const echo = await ow.actions.invoke({ name: '/whisk.system/utils/echo', blocking: true, result: true, params: { payload: 'hi' } });
  assert.deepStrictEqual(echo, { payload: 'hi' });
  const system = await ow.packages.list({ namespace: 'whisk.system' });
  assert.ok(system.some((p) => p.name === 'utils'), JSON.stringify(system));

  await assert.rejects(ow.packages.delete({ name: pkg }), (e) => e.statusCode === 409);
  await ow.actions.delete({ name: `${pkg}/show` });
  await ow.packages.delete({ name: 'owjs-bind' });
  await ow.packages.delete({ name: pkg });
  await assert.rejects(ow.packages.get({ name: pkg }), (e) => e.statusCode === 404);
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
  await packages();
  const ns = await ow.namespaces.list();
  assert.ok(Array.isArray(ns) && ns.length >= 1, JSON.stringify(ns));
  console.log('openwhisk client: all checks passed');
})().catch((e) => {
  console.error('openwhisk client check failed:', e && (e.stack || e.message || e));
  process.exit(1);
});
