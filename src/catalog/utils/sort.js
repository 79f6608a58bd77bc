// whisk.system/utils/sort: sorts `lines` as JavaScript's default sort does (by their text).
function main(params) {
  const lines = params.lines || [];
  lines.sort();
  return { lines: lines, length: lines.length };
}
