// Times Hugging Face tokenizers (native, via npm) encoding the text bench_tokenizer uses, for a
// side-by-side figure: cd tools/tokenizer_fixtures && npm ci && node bench_hf.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tk from '@anush008/tokenizers';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Same construction as english_text() in bench/tokenizer/bench_tokenizer.cpp.
function englishText() {
  const lines = fs.readFileSync(path.join(root, 'bench/tokenizer/english_sample.txt'), 'utf8')
    .split('\n').filter((l) => l.length > 0);
  let text = '';
  for (let pass = 0; text.length < 400 * 1024; ++pass) {
    for (let i = 0; i < lines.length; ++i) {
      const words = lines[(i + pass * 7) % lines.length].split(' ');
      const line = words.map((w, j) => ((j + pass) % 7 === 0 && w.length > 0
        ? w[0].toUpperCase() + w.slice(1) : w)).join(' ');
      text += `Section ${pass}.${i}: ${line}\n`;
    }
  }
  return text;
}

const tokenizer = tk.Tokenizer.fromFile(path.join(root, 'tests/data/tokenizer.json'));
const text = englishText();
const bytes = Buffer.byteLength(text, 'utf8');
const lines = text.split('\n').slice(0, -1).map((l) => l + '\n');

async function time(name, fn, minSeconds = 3) {
  await fn();  // warm-up
  let runs = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minSeconds) {
    await fn();
    ++runs;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  console.log(`${name}: ${(bytes * runs / elapsed / 1048576).toFixed(2)} MiB/s ` +
              `(${(elapsed / runs * 1000).toFixed(2)} ms per ${bytes} bytes)`);
}

const tokens = (await tokenizer.encode(text)).getIds().length;
console.log(`text: ${bytes} bytes, ${tokens} tokens`);
// encode() runs on the libuv thread pool; awaiting each call keeps it to one thread at a time.
await time('hf_encode_whole', () => tokenizer.encode(text));
await time('hf_encode_lines', async () => {
  for (const line of lines) await tokenizer.encode(line);
});
