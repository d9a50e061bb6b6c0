// Writes tests/data/tokenizer_cases.json: encode and decode results of the real Hugging Face
// tokenizers (native, via npm) on tests/data/tokenizer.json, which the C++ tests compare against.
//
//   cd tools/tokenizer_fixtures && npm ci && node ../tokenizer_fixtures.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'tokenizer_fixtures', 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');
const pkg = require('@anush008/tokenizers/package.json');

const dataDir = path.join(here, '..', 'tests', 'data');
const tokenizer = Tokenizer.fromFile(path.join(dataDir, 'tokenizer.json'));

const paragraph =
  'The committee met on Tuesday, 14 March 2023, to review the 1,250-page report. ' +
  "Members didn't agree on everything: some argued the budget ($4.7M) was too small, " +
  "others said it'd be wasted without oversight. In the end, they voted 7-2 to approve it.\n\n" +
  'Next steps: (1) publish the minutes; (2) schedule follow-ups — ideally before 30/04/2023; ' +
  '(3) circulate the draft to all 42 regional offices.';

const cases = [
  ['empty', ''],
  ['word', 'Hello'],
  ['sentence', 'Hello world! How are you today?'],
  ['prose', 'The quick brown fox jumps over the lazy dog. It was a bright cold day in April.'],
  ['contractions', "I'm sure they'll say we've done what we'd planned; DON'T you think it's IT'S?"],
  ['contractions_odd', "'s 't 're 've 'm 'll 'd 'S 'RE x's o'clock rock'n'roll"],
  ['code_python', 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n\n\nprint(add(1, 2))\n'],
  ['code_cpp', 'int main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n\treturn 0;\n}\n'],
  ['code_json', '{"key": [1, 2.5, -3e10], "nested": {"a": null, "b": true}}'],
  ['indentation', '        deeply\n            indented\n\t\tand tabbed\n'],
  ['digits_1', '1'],
  ['digits_2', '12'],
  ['digits_3', '123'],
  ['digits_4', '1234'],
  ['digits_5', '12345'],
  ['digits_7', '1234567'],
  ['digits_10', '1234567890'],
  ['digits_long', '3141592653589793238462643383279502884197169399375105820974944'],
  ['digits_mixed', 'abc123def 4567ghi x1y22z333w4444 v1.2.3 2024-01-15T10:30:00Z'],
  ['digits_spaced', 'call 555 0199 or +1 (800) 123-4567; pay $1,234,567.89 by 9am'],
  ['digits_unicode', 'x² + y³ = z¹ ½ ¼ ¾ ① ٣٤٥ ४५६ ⅷ'],
  ['spaces_runs', 'a  b   c    d     e'],
  ['spaces_trailing', 'trailing spaces   '],
  ['spaces_leading', '   leading spaces'],
  ['spaces_only', '     '],
  ['newlines', '\n\n\n'],
  ['newlines_text', 'line one\nline two\n\nline four\n\n\n'],
  ['tabs', '\tone\t\ttwo\t \tthree'],
  ['crlf', 'windows\r\nline\r\nendings\r\n'],
  ['unicode_spaces', 'nbsp\u00a0here\u2003em\u3000ideographic\u2028ls'],
  ['cjk', '你好，世界！这是一个测试句子。'],
  ['cjk_long', '自然语言处理是人工智能的一个重要分支，研究如何让计算机理解和生成人类语言。'],
  ['japanese', '日本語のテキストです。ひらがなとカタカナ、そして漢字。'],
  ['korean', '안녕하세요, 세계! 한국어 문장입니다.'],
  ['arabic', 'مرحبا بالعالم، هذا اختبار.'],
  ['hebrew', 'שלום עולם, זהו מבחן.'],
  ['cyrillic', 'Привет, мир! Съешь же ещё этих мягких французских булок.'],
  ['devanagari', 'नमस्ते दुनिया। यह एक परीक्षण है।'],
  ['greek', 'Καλημέρα κόσμε, ξεσκεπάζω την ψυχοφθόρα βδελυγμία.'],
  ['thai', 'สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง'],
  ['emoji', 'I love pizza 🍕 and cats 🐱🐈!'],
  ['emoji_zwj', 'family 👨‍👩‍👧‍👦 and 🧑🏽‍💻 coder, 🏳️‍🌈'],
  ['emoji_flags', 'flags 🇫🇷🇩🇪🇯🇵🇺🇸'],
  ['emoji_only', '😀😃😄😁😆😅🤣😂'],
  ['accents', 'café naïve résumé Zürich São Paulo Ångström'],
  ['combining', 'e\u0301 a\u0308 n\u0303 Z\u0327\u0301'],
  ['special_inside', 'a>>QUESTION<<b<|endoftext|>'],
  ['special_prompt', '>>QUESTION<<What is 2+2?>>ANSWER<< 4<|endoftext|>'],
  ['special_adjacent', '<|endoftext|><|endoftext|>>>TITLE<<>>ABSTRACT<<'],
  ['special_partial', '>>QUESTION< <|endoftext| >>>QUESTION<<<'],
  ['quotes_unicode', '“Smart quotes” and ‘single’ — dashes – and «guillemets» „low“ ‹›'],
  ['punct_runs', 'Wait... what?!? (really) [yes] {no} <maybe> ...!!!,,,;;;'],
  ['punct_unicode', '¿Qué? ¡Sí! 「引用」『二重』【括弧】、。・…‥'],
  ['symbols', '$100 + €50 = £?  ©®™ ± × ÷ ≠ ≤ ≥ ∞ → ⇒ ♥ ★'],
  ['url_email', 'Visit https://example.com/path?q=1&r=two#frag or mail me@example.org.'],
  ['markdown', '# Title\n\n* item one\n* **bold** and _italic_\n\n```bash\nls -la | grep foo\n```\n'],
  ['mixed_scripts', 'English, Русский, 中文, العربية, हिन्दी, 日本語, 한국어 — all in one.'],
  ['long_word', 'Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism'],
  ['repeated', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
  ['long_space_run', 'x' + ' '.repeat(100) + 'y' + '\n'.repeat(60)],
  ['paragraph', paragraph],
  ['paragraph_x3', [paragraph, paragraph, paragraph].join('\n')],
  ['control_chars', 'bell\u0007 nul\u0000 esc\u001b[0m del\u007f sep\u001c'],
  ['private_use', 'pua \ue000\uf8ff \u{f0000}'],
  ['rare_planes', 'gothic 𐌰𐌱 math 𝐀𝐁 cuneiform 𒀀 todhri 𐗀 digits 𝟙𝟚'],
];

const seen = new Set();
const out = { generator: 'tools/tokenizer_fixtures.mjs', tokenizers: `@anush008/tokenizers ${pkg.version}`, cases: [], decode_cases: [] };
for (const [name, text] of cases) {
  if (seen.has(name)) throw new Error(`duplicate case ${name}`);
  seen.add(name);
  const enc = await tokenizer.encode(text);
  const ids = Array.from(enc.getIds());
  out.cases.push({
    name,
    text,
    ids,
    decoded: await tokenizer.decode(ids, false),
    decoded_skip_special: await tokenizer.decode(ids, true),
  });
}

// Id sequences whose bytes are not valid UTF-8: prefixes of multi-byte characters, and random ids.
const addDecode = async (name, ids) => {
  for (const skip of [false, true]) {
    out.decode_cases.push({ name, ids, skip_special: skip, text: await tokenizer.decode(ids, skip) });
  }
};
for (const c of out.cases.filter((c) => ['emoji_zwj', 'emoji_flags', 'cjk', 'thai'].includes(c.name))) {
  for (let k = 1; k < Math.min(c.ids.length, 12); k++) await addDecode(`${c.name}_prefix_${k}`, c.ids.slice(k - 1, k + 1));
}
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
for (let i = 0; i < 40; i++) {
  const ids = Array.from({ length: 1 + Math.floor(rand() * 12) }, () => Math.floor(rand() * 65024));
  if (i % 5 === 0) ids.splice(Math.floor(rand() * ids.length), 0, Math.floor(rand() * 12));
  await addDecode(`random_${i}`, ids);
}

const file = path.join(dataDir, 'tokenizer_cases.json');
fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
console.log(`${file}: ${out.cases.length} encode cases, ${out.decode_cases.length} decode cases`);
