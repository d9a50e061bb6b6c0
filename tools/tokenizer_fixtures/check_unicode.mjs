// Writes, for every code point, the class Hugging Face tokenizers gives it (the same encoding as
// tools/gen_unicode_tables.py) so the generated table can be compared with the real thing:
//   node check_unicode.mjs /tmp/hf_classes.bin && python3 ../gen_unicode_tables.py --check /tmp/hf_classes.bin
import fs from 'node:fs';
import tk from '@anush008/tokenizers';

const punct = tk.punctuationPreTokenizer('contiguous');
const byteLevel = tk.byteLevelPreTokenizer(false, true);
const out = new Uint8Array(0x110000);
const pieces = (pre, s) => pre.preTokenizeString(s).length;
for (let cp = 0; cp < 0x110000; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const c = String.fromCodePoint(cp);
  let cls = 3;
  if (pieces(byteLevel, 'a' + c) === 1) cls = 1;
  else if (pieces(byteLevel, '1' + c) === 1) cls = 2;
  else if (pieces(byteLevel, '%' + c) === 1) cls = 0;
  if (pieces(punct, 'a' + c + 'a') === 3) cls |= 4;
  out[cp] = cls;
}
fs.writeFileSync(process.argv[2], out);
