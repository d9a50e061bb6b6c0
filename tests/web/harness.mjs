// Plumbing for the browser tests: checks what they need is installed, runs `eyrie serve` on a free
// port, and launches headless Debian Chromium through playwright-core with a throwaway profile.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const CHROMIUM = '/usr/bin/chromium';
const here = path.dirname(fileURLToPath(import.meta.url));

export class SetupError extends Error {}

// Missing tools fail the test with the fix, rather than skipping it quietly.
export async function loadPlaywright() {
  if (!fs.existsSync(CHROMIUM))
    throw new SetupError(`${CHROMIUM} is missing: run scripts/setup.sh (it installs the Debian package chromium)`);
  const entry = path.join(here, 'node_modules', 'playwright-core', 'index.mjs');
  if (!fs.existsSync(entry))
    throw new SetupError(`${path.join(here, 'node_modules')} has no playwright-core: ` +
                         'run scripts/setup.sh (npm ci in tests/web)');
  return import(pathToFileURL(entry).href);
}

// Starts the server and resolves with its base URL once it prints the port it bound.
export function startServer(binary, modelDir, { port = 0, timeoutMs = 30000 } = {}) {
  if (!fs.existsSync(binary)) throw new SetupError(`no eyrie binary at ${binary}`);
  const child = spawn(binary, ['serve', '--port', String(port), '--model', modelDir, '--threads', '1'],
                      { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`eyrie serve printed no address within ${timeoutMs} ms:\n${stderr}`)),
      timeoutMs);
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`eyrie serve exited early (${code ?? signal}):\n${stderr}`));
    });
  });
  return {
    ready,
    log: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

export async function launchBrowser(playwright) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'eyrie-web-'));
  const context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
