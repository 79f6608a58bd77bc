// whisk.system/utils/cat: joins `lines` into one string, `payload`, one line each.
function main(params) {
  const lines = params.lines || [];
  return { lines: lines, payload: lines.join('\n') };
}
