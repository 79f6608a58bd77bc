// Exercises hearth's triggers, rules and the built-in alarms feeds through OpenWhisk's
// JavaScript client library, unchanged: triggers (create, get, update, list, fire, delete),
// rules (create, get, list, disable, enable, delete) with the fired action's record caused by
// the trigger activation, and feeds (create, get, update, delete on /whisk.system/alarms).
// Exits non-zero with a message on the first mismatch.
'use strict';
const assert = require('assert');
const openwhisk = require('openwhisk');

const ow = openwhisk({
  apihost: process.env.HEARTH_APIHOST,
  api_key: process.env.HEARTH_AUTH,
  ignore_certs: true,
});

async function waitFor(id, done) {
  for (let i = 0; i < 600; i++) {
    try {
      const a = await ow.activations.get({ name: id });
      if (!done || done(a)) return a;
    } catch (e) {
      if (e.statusCode !== 404) throw e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`activation ${id} never appeared`);
}

async function triggersAndRules() {
  const kv = (o) => Object.entries(o).map(([key, value]) => ({ key, value }));
  await ow.actions.create({ name: 'owjs-echo', action: { exec: { kind: 'python:3', code: 'def main(a):\n    return a\n' } } });
  const t = await ow.triggers.create({ name: 'owjs-t', trigger: { parameters: kv({ from: 'trigger', x: 1 }) } });
  assert.strictEqual(t.name, 'owjs-t');
  assert.strictEqual(t.version, '0.0.1');
  const u = await ow.triggers.update({ name: 'owjs-t', trigger: { annotations: kv({ note: 'n' }) } });
  assert.strictEqual(u.version, '0.0.2');
  assert.strictEqual(u.parameters.length, 2, JSON.stringify(u));
  assert.ok((await ow.triggers.list()).some((x) => x.name === 'owjs-t'));

  const r = await ow.rules.create({ name: 'owjs-r', trigger: 'owjs-t', action: 'owjs-echo' });
  assert.strictEqual(r.status, 'active', JSON.stringify(r));
  assert.deepStrictEqual(r.action, { path: 'guest', name: 'owjs-echo' });
  const got = await ow.triggers.get({ name: 'owjs-t' });
  assert.strictEqual(got.rules['guest/owjs-r'].status, 'active', JSON.stringify(got));
  assert.ok((await ow.rules.list()).some((x) => x.name === 'owjs-r'));

  const fired = await ow.triggers.invoke({ name: 'owjs-t', params: { x: 2 } });
  assert.ok(fired.activationId, JSON.stringify(fired));
  const rec = await waitFor(fired.activationId);
  assert.deepStrictEqual(rec.response.result, { x: 2 });
  const line = JSON.parse(rec.logs[0]);
  assert.strictEqual(line.rule, 'guest/owjs-r');
  assert.strictEqual(line.success, true);
  const act = await waitFor(line.activationId, (a) => a.response.status === 'success');
  assert.strictEqual(act.cause, fired.activationId);
  assert.deepStrictEqual(act.response.result, { from: 'trigger', x: 2 });

  await ow.rules.disable({ name: 'owjs-r' });
  assert.strictEqual((await ow.rules.get({ name: 'owjs-r' })).status, 'inactive');
  await ow.rules.enable({ name: 'owjs-r' });
  assert.strictEqual((await ow.rules.get({ name: 'owjs-r' })).status, 'active');
  await ow.rules.delete({ name: 'owjs-r' });
  await ow.triggers.delete({ name: 'owjs-t' });
  await assert.rejects(ow.triggers.get({ name: 'owjs-t' }), (e) => e.statusCode === 404);
}

async function feeds() {
  const feedName = '/whisk.system/alarms/alarm';
  await ow.triggers.create({ name: 'owjs-alarm', trigger: { annotations: [{ key: 'feed', value: feedName }] } });
  const created = await ow.feeds.create({ name: feedName, trigger: 'owjs-alarm', params: { cron: '*/2 * * * * *', trigger_payload: { k: 'v' } } });
  assert.deepStrictEqual(created.response.result, { status: 'success' }, JSON.stringify(created));
  const read = await ow.feeds.get({ name: feedName, trigger: 'owjs-alarm' });
  assert.strictEqual(read.response.result.config.cron, '*/2 * * * * *', JSON.stringify(read));
  assert.deepStrictEqual(read.response.result.config.payload, { k: 'v' });
  assert.strictEqual(read.response.result.status.active, true);
  await ow.feeds.update({ name: feedName, trigger: 'owjs-alarm', params: { trigger_payload: { k: 'w' } } });
  const reread = await ow.feeds.get({ name: feedName, trigger: 'owjs-alarm' });
  assert.deepStrictEqual(reread.response.result.config.payload, { k: 'w' });
  await assert.rejects(
    ow.feeds.create({ name: feedName, trigger: 'owjs-alarm', params: { cron: 'nope' } }),
    (e) => e.statusCode === 502 && JSON.stringify(e.error).includes("cron pattern 'nope' is not valid"),
  );
  const deleted = await ow.feeds.delete({ name: feedName, trigger: 'owjs-alarm' });
  assert.deepStrictEqual(deleted.response.result, { status: 'success' });
  await ow.triggers.delete({ name: 'owjs-alarm' });
}

(async () => {
  await triggersAndRules();
  await feeds();
  console.log('ok');
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e, e && e.error ? JSON.stringify(e.error) : '');
  process.exit(1);
});
