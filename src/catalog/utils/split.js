// whisk.system/utils/split: splits `payload` at `separator` (default: line ends).
function main(params) {
  const separator = params.separator || /\r?\n/;
  const text = String(params.payload);
  return { lines: text.split(separator), payload: params.payload };
}
