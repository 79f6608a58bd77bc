// A sequence through OpenWhisk's JavaScript client library, unchanged: create one with exec
// kind sequence from the actions tests/sequences.rs made (inc, dbl), read it back, invoke it
// blocking with result-only and with the activation, read the records of its components,
// delete it. Exits non-zero with a message on the first mismatch; prints "sequences ok".
'use strict';
const assert = require('assert');
const openwhisk = require('openwhisk');

const ow = openwhisk({
  apihost: process.env.HEARTH_APIHOST,
  api_key: process.env.HEARTH_AUTH,
  ignore_certs: true,
});

async function main() {
  const name = 'owjs-seq';
  const exec = { kind: 'sequence', components: ['/guest/inc', '/_/dbl'] };
  const created = await ow.actions.create({ name, action: { exec }, overwrite: true });
  assert.deepStrictEqual(created.exec, { kind: 'sequence', components: ['/guest/inc', '/guest/dbl'] });
  const got = await ow.actions.get({ name });
  assert.strictEqual(got.exec.kind, 'sequence');
  assert.ok(got.annotations.some((a) => a.key === 'exec' && a.value === 'sequence'), JSON.stringify(got));

  const result = await ow.actions.invoke({ name, blocking: true, result: true, params: { n: 3 } });
  assert.deepStrictEqual(result, { n: 8 });

  const act = await ow.actions.invoke({ name, blocking: true, params: { n: 1 } });
  assert.deepStrictEqual(act.response.result, { n: 4 });
  assert.strictEqual(act.logs.length, 2, JSON.stringify(act));
  assert.ok(act.annotations.some((a) => a.key === 'kind' && a.value === 'sequence'));
  // A blocking answer comes after its records are committed: no polling.
  for (const id of act.logs) {
    const c = await ow.activations.get({ name: id });
    assert.strictEqual(c.cause, act.activationId, JSON.stringify(c));
  }
  const seqRecord = await ow.activations.get({ name: act.activationId });
  assert.deepStrictEqual(seqRecord.logs, act.logs);

  await ow.actions.delete({ name });
  console.log('sequences ok');
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
