// whisk.system/utils/smash: nests every parameter under the name given as `$fieldName`.
function main(params) {
  const field = params.$fieldName;
  const rest = {};
  for (const key of Object.keys(params)) {
    if (key !== '$fieldName') {
      rest[key] = params[key];
    }
  }
  const out = {};
  out[field] = rest;
  return out;
}
