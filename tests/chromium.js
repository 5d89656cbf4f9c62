// How the tests launch Chromium: Debian's /usr/bin/chromium, never a downloaded browser.
// Shared by playwright.config.js and specs that launch their own browser.

/** Debian's Chromium. */
export const executablePath = '/usr/bin/chromium';

/** Flags for a closed-network machine (root needs --no-sandbox). */
export const args = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** The launch options every browser of the suite uses. */
export const launchOptions = { executablePath, args };

/** Where the demo is served (set by `cargo xtask test`). */
export function baseURL() {
  const url = process.env.SQLITE_TABS_BASE_URL;
  if (!url) {
    throw new Error(
      'SQLITE_TABS_BASE_URL is not set. Run the suite with `cargo xtask test --only e2e`, or start ' +
        '`cargo xtask serve` and set SQLITE_TABS_BASE_URL=http://127.0.0.1:8080',
    );
  }
  return url.replace(/\/+$/, '');
}
