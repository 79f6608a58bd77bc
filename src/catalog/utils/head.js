// whisk.system/utils/head: the first `num` (default 1) of `lines`.
function main(params) {
  const lines = params.lines || [];
  const num = params.num || 1;
  return { lines: lines.slice(0, num), num: num };
}
