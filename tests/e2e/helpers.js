// Helpers shared by the end-to-end specs.

/**
 * Forwards the page's console errors and uncaught exceptions to the test output, so a
 * failure in the library shows up next to the failing test.
 */
export function forwardPageErrors(page, label = 'page') {
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      console.log(`[${label} console.${msg.type()}] ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => console.log(`[${label} pageerror] ${err.stack || err}`));
}

/**
 * Opens the demo at `url` (default `/`) and waits until it has set `window.db`.
 * Fails early with the demo's status line if opening the database failed.
 */
export async function openDemo(page, url = '/') {
  await page.goto(url);
  await waitForDb(page);
}

/** Waits for `window.db`, failing with the status line if the demo reports an error. */
export async function waitForDb(page) {
  const handle = await page.waitForFunction(() => {
    if (window.db) return 'ok';
    const status = document.querySelector('[data-testid="status"]');
    return status && status.dataset.state === 'error' ? status.textContent : null;
  });
  const result = await handle.jsonValue();
  if (result !== 'ok') throw new Error(`the demo could not open the database: ${result}`);
}

/** A string unlikely to occur twice: marks the rows one test run writes. */
export function uniqueMarker(prefix = 'e2e') {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
