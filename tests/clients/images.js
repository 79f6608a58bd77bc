// An image action through OpenWhisk's JavaScript client library, unchanged: create one as
// `wsk action create --docker` sends it (kind blackbox, an image, the code for the image's
// action proxy), read it back with its image, invoke it blocking (result only, then the whole
// activation with its logs), then delete it.
// The test image (tests/images/build.sh) was imported by the test. Exits non-zero with a message on the
// first mismatch; prints "images ok".
'use strict';
const assert = require('assert');
const openwhisk = require('openwhisk');

const ow = openwhisk({
  apihost: process.env.HEARTH_APIHOST,
  api_key: process.env.HEARTH_AUTH,
  ignore_certs: true,
});

const CODE = [
  'import os',
  'def main(args):',
  '    print("hello from the image", args.get("who"))',
  '    return {"who": args.get("who"), "image": os.environ.get("HEARTH_TEST_IMAGE")}',
  '',
].join('\n');

async function main() {
  const name = 'owjs-image';
  const image = 'hearth-test/proxy:1';
  const exec = { kind: 'blackbox', image, code: CODE };
  const created = await ow.actions.create({ name, action: { exec }, overwrite: true });
  assert.strictEqual(created.exec.kind, 'blackbox', JSON.stringify(created));
  assert.strictEqual(created.exec.image, image, JSON.stringify(created));
  const got = await ow.actions.get({ name });
  assert.strictEqual(got.exec.image, image, JSON.stringify(got));

  const result = await ow.actions.invoke({ name, blocking: true, result: true, params: { who: 'owjs' } });
  assert.deepStrictEqual(result, { who: 'owjs', image: 'proxy' });

  const act = await ow.actions.invoke({ name, blocking: true, params: { who: 'again' } });
  assert.deepStrictEqual(act.response.result, { who: 'again', image: 'proxy' });
  assert.strictEqual(act.response.status, 'success');
  assert.strictEqual(act.logs.length, 1, JSON.stringify(act.logs));
  assert.ok(act.logs[0].endsWith('stdout: hello from the image again'), JSON.stringify(act.logs));

  await ow.actions.delete({ name });
  console.log('images ok');
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
