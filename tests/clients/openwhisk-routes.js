// API routes through OpenWhisk's JavaScript client, unchanged (tests/web.rs): routes.create
// (one operation with a path parameter and the http response type, a second one into the same
// API, one with the json type in another API), routes.get / routes.list, then routes.delete of
// one operation and of a whole API; a gateway URL fetched without a key. Prints the APIs'
// URLs as one JSON line for the Rust side to check what is left; exits non-zero on the first
// mismatch.
'use strict';
const assert = require('assert');
const openwhisk = require('openwhisk');

const ow = openwhisk({
  apihost: process.env.HEARTH_APIHOST,
  api_key: process.env.HEARTH_AUTH,
  ignore_certs: true,
});

async function main() {
  const book = await ow.routes.create({
    name: 'Book Club', basepath: '/club', relpath: '/books/{isbn}', operation: 'GET',
    action: 'books', responsetype: 'http',
  });
  assert.ok(book.gwApiUrl.endsWith('/api/guest/club'), JSON.stringify(book));
  const op = book.apidoc.paths['/books/{isbn}'].get;
  assert.strictEqual(op['x-openwhisk'].action, 'books', JSON.stringify(book));
  assert.strictEqual(op.parameters[0].name, 'isbn');
  const post = await ow.routes.create({
    basepath: '/club', relpath: '/books', operation: 'POST', action: 'books', responsetype: 'http',
  });
  assert.strictEqual(post.apidoc.info.title, 'Book Club', 'the API keeps its name');
  assert.deepStrictEqual(Object.keys(post.apidoc.paths).sort(), ['/books', '/books/{isbn}']);
  const hello = await ow.routes.create({ basepath: '/hello', relpath: '/world', operation: 'get', action: 'greet' });

  const club = await ow.routes.get({ basepath: '/club' });
  assert.strictEqual(club.apis.length, 1, JSON.stringify(club));
  assert.strictEqual(club.apis[0].value.gwApiUrl, book.gwApiUrl);
  const byName = await ow.routes.get({ name: 'Book Club' });
  assert.strictEqual(byName.apis.length, 1);
  const all = await ow.routes.list();
  assert.strictEqual(all.apis.length, 2, JSON.stringify(all));

  let refused = null;
  try {
    await ow.routes.create({ basepath: '/x', relpath: '/y', operation: 'get', action: 'not-web' });
  } catch (e) { refused = e; }
  assert.ok(refused && /not a web action/.test(refused.message), String(refused));

  // The URL handed back serves the action, without a key, with the API's response type.
  const greeting = await fetch(`${hello.gwApiUrl}/world?name=Ada`);
  assert.strictEqual(greeting.status, 200);
  assert.strictEqual((await greeting.json()).greeting, 'Hello Ada');

  await ow.routes.delete({ basepath: '/club', relpath: '/books', operation: 'POST' });
  const left = await ow.routes.get({ basepath: '/club' });
  assert.deepStrictEqual(Object.keys(left.apis[0].value.apidoc.paths), ['/books/{isbn}']);
  await ow.routes.delete({ basepath: '/hello' });
  const after = await ow.routes.list();
  assert.strictEqual(after.apis.length, 1, JSON.stringify(after));
  let missing = null;
  try { await ow.routes.delete({ basepath: '/nope' }); } catch (e) { missing = e; }
  assert.ok(missing && /does not exist/.test(missing.message), String(missing));
  console.log(JSON.stringify({ club: book.gwApiUrl, hello: hello.gwApiUrl }));
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(1);
});
