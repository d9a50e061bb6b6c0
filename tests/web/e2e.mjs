// End-to-end test of the bundled chat UI in headless Chromium against a real `eyrie serve` running
// the scripted model (make_scripted_model), whose greedy reply is an HTML-injection payload.
// Usage: node tests/web/e2e.mjs EYRIE_BINARY MODEL_DIR [--screenshot PNG]
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { SetupError, launchBrowser, loadPlaywright, startServer } from './harness.mjs';

const [binary, modelDir, ...rest] = process.argv.slice(2);
if (!binary || !modelDir) {
  console.error('usage: node tests/web/e2e.mjs EYRIE_BINARY MODEL_DIR [--screenshot PNG]');
  process.exit(2);
}
const shotAt = rest.indexOf('--screenshot');
const screenshot = shotAt >= 0 ? rest[shotAt + 1] : null;
const script = JSON.parse(fs.readFileSync(path.join(modelDir, 'scripted.json'), 'utf8'));

const started = Date.now();
const step = (name) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${name}`);

// ---- Page helpers -------------------------------------------------------------------------

const lastReply = (page) => page.locator('.msg.assistant').last();

async function setField(page, id, value) {
  // The settings panel starts folded on a phone: open it like a user would, then fold it back.
  const folded = !(await page.locator('#settings').evaluate((d) => d.open));
  if (folded) await page.click('#settings summary');
  await page.fill(`#${id}`, String(value));
  await page.dispatchEvent(`#${id}`, 'change');
  if (folded) await page.click('#settings summary');
}

async function waitDone(page, timeout = 20000) {
  const last = '.msg.assistant:last-child';
  await page.waitForSelector(`${last}[data-state="done"], ${last}[data-state="error"]`, { timeout });
  const reply = lastReply(page);
  return {
    finish: await reply.getAttribute('data-finish'),
    text: await reply.locator('.msg-body').textContent(),
    meta: await reply.locator('.msg-meta').textContent(),
  };
}

async function newChat(page) {
  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0, 'New chat empties the conversation');
}

// ---- Scenarios ----------------------------------------------------------------------------

async function checkHttp(base) {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  const csp = index.headers.get('content-security-policy') || '';
  for (const rule of ["script-src 'self'", "connect-src 'self'", "default-src 'self'"])
    assert.ok(csp.includes(rule), `CSP has ${rule}: ${csp}`);
  const etag = index.headers.get('etag');
  assert.ok(etag, 'index.html has an ETag');
  const again = await fetch(`${base}/`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304, 'a matching ETag gets 304');
  for (const [asset, type] of [['/app.js', /javascript/], ['/style.css', /text\/css/]]) {
    const r = await fetch(base + asset);
    assert.equal(r.status, 200, asset);
    assert.match(r.headers.get('content-type'), type, asset);
  }
  assert.equal((await fetch(`${base}/nope.js`)).status, 404);
  // POST / is still TGI's generate route.
  const gen = await fetch(`${base}/`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: 'Falcon:', parameters: { max_new_tokens: 3, temperature: 0 } }),
  });
  assert.equal(gen.status, 200);
  assert.equal((await gen.json()).generated_text, '<script>');
}

async function loadPage(page, base) {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'open');
  await page.waitForFunction(() => document.querySelector('#server-status').dataset.state === 'healthy');
  await page.waitForFunction((name) => document.querySelector('#model-name').textContent === name,
                             path.basename(modelDir));
  // Greedy output, so the scripted model answers exactly.
  await setField(page, 'temperature', 0);
  await setField(page, 'max-new-tokens', 200);
}

async function streaming(page) {
  // Shift+Enter is a new line, not a send.
  await page.focus('#prompt');
  await page.keyboard.type('Hello');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('falcon');
  assert.equal(await page.inputValue('#prompt'), 'Hello\nfalcon');
  assert.equal(await page.locator('.msg').count(), 0, 'Shift+Enter sent nothing');

  // Record the reply's text length at every DOM mutation and every animation frame.
  await page.evaluate(() => {
    const samples = (window.__samples = []);
    const record = (kind) => {
      const reply = [...document.querySelectorAll('.msg.assistant')].pop();
      if (!reply) return;
      const len = reply.querySelector('.msg-body').textContent.length;
      samples.push({ kind, state: reply.dataset.state, len });
    };
    new MutationObserver(() => record('mutation'))
      .observe(document.getElementById('log'),
               { subtree: true, childList: true, characterData: true, attributes: true });
    const frame = () => { record('frame'); requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
  });
  await page.keyboard.press('Enter');
  const done = await waitDone(page);
  const samples = await page.evaluate(() => window.__samples);
  const growth = (kind) => {
    const lens = samples.filter((s) => s.kind === kind && s.state === 'streaming' && s.len > 0).map((s) => s.len);
    lens.forEach((l, i) => i && assert.ok(l >= lens[i - 1], 'the reply only grows while streaming'));
    return new Set(lens).size;
  };
  const frames = growth('frame'), mutations = growth('mutation');
  assert.ok(frames >= 3, `text grew over ${frames} animation frames before done (want >= 3)`);
  assert.ok(mutations >= 3, `text grew over ${mutations} mutations before done (want >= 3)`);
  assert.equal(done.finish, 'length');
  assert.ok(done.text.startsWith(script.payload), `reply starts with the scripted text: ${done.text.slice(0, 80)}`);
  assert.match(done.meta, /finish: length/);
  assert.match(done.meta, /[\d.]+ tokens\/s/);
  assert.match(done.meta, /first token \d+ ms/);
  assert.equal(await page.locator('.msg.user .msg-body').textContent(), 'Hello\nfalcon');
  return { frames, mutations };
}

async function stopMidStream(page, maxTokens = 2000) {
  await setField(page, 'max-new-tokens', maxTokens);
  await page.fill('#prompt', 'Tell me a long story');
  await page.click('#send');
  await page.waitForFunction(() => {
    const reply = [...document.querySelectorAll('.msg.assistant')].pop();
    return reply && reply.querySelector('.msg-body').textContent.length > 0;
  });
  assert.ok(await page.isEnabled('#stop'), 'Stop is enabled while streaming');
  await page.click('#stop');
  const done = await waitDone(page);
  assert.equal(done.finish, 'cancelled');
  assert.match(done.meta, /finish: cancelled/);
  const tokens = Number(/(\d+) tokens(?!\/)/.exec(done.meta)[1]);
  assert.ok(tokens < maxTokens, `stopped after ${tokens} of ${maxTokens} tokens`);
  assert.ok(await page.isDisabled('#stop'), 'Stop is disabled again');
  return tokens;
}

async function regenerate(page) {
  await setField(page, 'max-new-tokens', 5);
  await page.click('#regenerate');
  const done = await waitDone(page);
  assert.equal(await page.locator('.msg.assistant').count(), 1, 'Regenerate replaces the last reply');
  assert.equal(done.finish, 'length');
  assert.equal(done.text, '<script>window.__');
}

async function injection(page) {
  await setField(page, 'max-new-tokens', 100);
  await setField(page, 'stop-sequences', '">');
  await page.fill('#prompt', 'Show the payload');
  await page.click('#send');
  const done = await waitDone(page);
  assert.equal(done.finish, 'stop_sequence');
  assert.equal(done.text, script.payload, 'the model text is shown as text, exactly');
  const reply = lastReply(page).locator('.msg-body');
  assert.ok((await reply.textContent()).includes('<script>'));
  assert.equal(await reply.locator('img, script, iframe, a').count(), 0, 'no element came from model text');
  assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');

  // User text is untrusted too.
  const userText = '<img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script>';
  await page.fill('#prompt', userText);
  await page.click('#send');
  await waitDone(page);
  assert.equal(await page.locator('.msg.user').last().locator('.msg-body').textContent(), userText);
  assert.equal(await page.locator('#log img, #log script').count(), 0);
  assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  await setField(page, 'stop-sequences', '');
}

async function phone(page) {
  await page.setViewportSize({ width: 375, height: 667 });
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'open');
  assert.equal(await page.locator('#settings').evaluate((d) => d.open), false, 'settings start folded on a phone');
  for (const id of ['prompt', 'send', 'stop']) {
    const box = await page.locator(`#${id}`).boundingBox();
    assert.ok(box && box.width >= 40 && box.height >= 24, `#${id} has a usable size`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= 375 && box.y + box.height <= 667,
              `#${id} is inside the 375x667 viewport: ${JSON.stringify(box)}`);
    assert.ok(await page.isVisible(`#${id}`), `#${id} is visible`);
  }
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `no sideways scrolling (${width}px wide)`);
  await newChat(page);
  await stopMidStream(page);  // settings were kept (localStorage): temperature 0
  for (const id of ['prompt', 'send', 'stop']) {
    const box = await page.locator(`#${id}`).boundingBox();
    assert.ok(box.y + box.height <= 667, `#${id} stays on screen with a conversation`);
  }
}

// The server goes away and comes back on the same port: the page notices, retries with backoff
// and works again without a reload.
let serverDown = false;

async function reconnect(page, server, base) {
  serverDown = true;
  await server.stop();
  await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'closed');
  assert.match(await page.textContent('#conn-status'), /retrying in \d+ s/);
  await page.waitForTimeout(1200);  // at least one retry meets a closed port
  const again = startServer(binary, modelDir, { port: Number(new URL(base).port) });
  await again.ready;
  await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'open');
  serverDown = false;
  await setField(page, 'max-new-tokens', 3);
  await page.fill('#prompt', 'Still there?');
  await page.click('#send');
  assert.equal((await waitDone(page)).text, '<script>');
  return again;
}

// ---- Main ---------------------------------------------------------------------------------

async function main() {
  const playwright = await loadPlaywright();
  let server = startServer(binary, modelDir);
  let browser;
  try {
    const base = await server.ready;
    const origin = new URL(base).host;
    step(`server at ${base}`);
    await checkHttp(base);
    step('HTTP routes, CSP and caching checked');

    browser = await launchBrowser(playwright);
    const page = browser.context.pages()[0] || (await browser.context.newPage());
    page.setDefaultTimeout(15000);
    const problems = [];
    page.on('console', (m) => {
      // While the server is down on purpose, failed connection attempts are expected noise.
      const refused = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(m.text());
      if (m.type() === 'error' && !(serverDown && refused)) problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    browser.context.on('request', (r) => {
      const u = new URL(r.url());
      if (!['data:', 'about:'].includes(u.protocol) && u.host !== origin)
        problems.push(`request left the server: ${r.url()}`);
    });
    page.on('websocket', (ws) => {
      if (new URL(ws.url()).host !== origin) problems.push(`websocket left the server: ${ws.url()}`);
    });

    await loadPage(page, base);
    step('page loaded: model name, healthy, connected');
    const { frames, mutations } = await streaming(page);
    step(`streamed: text grew over ${frames} frames / ${mutations} mutations, then finish and tokens/s shown`);
    await newChat(page);
    const stoppedAt = await stopMidStream(page);
    step(`Stop mid-stream: cancelled after ${stoppedAt} tokens`);
    await regenerate(page);
    step('Regenerate re-ran the last turn');
    await newChat(page);
    await injection(page);
    step('injection payload from the model and the user rendered as text; window.__pwned undefined');
    if (screenshot) {
      await page.screenshot({ path: screenshot });
      step(`screenshot: ${screenshot}`);
    }
    await phone(page);
    step('phone viewport: input, Send and Stop visible and usable');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.ok(metrics.includes('/index.html'), 'UI requests are counted in /metrics');
    await newChat(page);
    server = await reconnect(page, server, base);
    step('reconnected after a server restart');

    assert.deepEqual(problems, [], 'no console errors and no request outside the server');
  } finally {
    if (browser) await browser.close();
    const { code, signal } = await server.stop();
    if (code !== 0) console.error(`eyrie serve ended with ${code ?? signal}; its log:\n${server.log()}`);
  }
  step('passed');
}

main().catch((e) => {
  if (e instanceof SetupError) console.error(`web e2e cannot run: ${e.message}`);
  else console.error(e);
  process.exit(1);
});
