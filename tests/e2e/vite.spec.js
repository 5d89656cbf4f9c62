// The React demo as Vite builds it (served at / by `cargo xtask test`) and in Vite's dev
// server (`npx vite` in demo/, started here): with README's two Vite settings, both
// bundle or serve the package's workers and wasm so that the database opens and tabs
// share it. Proof that README's Vite section is all an app needs.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { test, expect } from '@playwright/test';
import { forwardPageErrors, openDemo, uniqueMarker } from './helpers.js';

const DEMO = fileURLToPath(new URL('../../demo/', import.meta.url));

/** URLs and names of the browser's worker targets. */
async function workers(context) {
  const cdp = await context.browser().newBrowserCDPSession();
  try {
    const { targetInfos } = await cdp.send('Target.getTargets');
    return targetInfos
      .filter((t) => t.type === 'worker' || t.type === 'shared_worker')
      .map((t) => ({ type: t.type, url: t.url, name: t.title }));
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Opens the demo in two tabs at `url`; checks one list and one leader between them. */
async function twoTabsShareTheList(context, url) {
  const tabs = [];
  for (const label of ['tab A', 'tab B']) {
    const page = await context.newPage();
    forwardPageErrors(page, label);
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(String(err)));
    await openDemo(page, url);
    tabs.push(page);
  }
  const [a, b] = tabs;
  const text = uniqueMarker('vite');
  await a.getByTestId('new-item').fill(text);
  await a.getByTestId('add-item').click();
  await expect(b.getByTestId('item').filter({ hasText: text })).toHaveCount(1);
  const roles = () =>
    Promise.all(tabs.map((p) => p.getByTestId('leader').getAttribute('data-leader')));
  await expect.poll(roles).toEqual(expect.arrayContaining(['true', 'false']));
  expect([...a.errors, ...b.errors]).toEqual([]);
  return tabs;
}

test('vite build: the demo bundles the workers and their wasm into assets/', async ({
  context,
}) => {
  await twoTabsShareTheList(context, '/');
  const ours = (await workers(context)).filter((w) => w.name.includes('demo.db'));
  const origin = new URL(test.info().project.use.baseURL).origin;
  expect(ours.filter((w) => w.type === 'worker').map((w) => w.url)).toEqual([
    expect.stringMatching(new RegExp(`^${origin}/assets/db-worker-[\\w-]+\\.js$`)),
    expect.stringMatching(new RegExp(`^${origin}/assets/db-worker-[\\w-]+\\.js$`)),
  ]);
  expect(ours.filter((w) => w.type === 'shared_worker')).toEqual([
    {
      type: 'shared_worker',
      url: expect.stringMatching(new RegExp(`^${origin}/assets/shared-worker-[\\w-]+\\.js$`)),
      name: 'sqlite-tabs:demo.db',
    },
  ]);
});

test.describe("Vite's dev server", () => {
  let server;
  let url;
  let output = '';

  test.beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    server = spawn(
      process.execPath,
      ['node_modules/vite/bin/vite.js', '--host', '127.0.0.1', '--port', String(port), '--strictPort'],
      { cwd: DEMO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vite did not start in 30 s:\n${output}`)), 30_000);
      const read = (chunk) => {
        output += chunk;
        if (output.includes(url)) {
          clearTimeout(timer);
          resolve();
        }
      };
      server.stdout.on('data', read);
      server.stderr.on('data', read);
      server.once('exit', (code) => reject(new Error(`vite exited with ${code}:\n${output}`)));
    });
  });

  test.afterAll(() => {
    server?.kill();
  });

  test('the demo runs in StrictMode with one worker per tab, served from node_modules', async ({
    context,
  }) => {
    await twoTabsShareTheList(context, url);
    const ours = (await workers(context)).filter((w) => w.name.includes('demo.db'));
    // StrictMode mounted DatabaseProvider twice in each tab: still one worker each.
    const base = `${url}node_modules/sqlite-tabs/`;
    expect(ours.filter((w) => w.type === 'worker').map((w) => w.url)).toEqual([
      expect.stringMatching(new RegExp(`^${base}db-worker\\.js\\?`)),
      expect.stringMatching(new RegExp(`^${base}db-worker\\.js\\?`)),
    ]);
    expect(ours.filter((w) => w.type === 'shared_worker').map((w) => w.url)).toEqual([
      expect.stringMatching(new RegExp(`^${base}shared-worker\\.js\\?`)),
    ]);
    expect(output).not.toMatch(/error/i);
  });
});
