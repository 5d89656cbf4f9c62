// Playwright configuration of the sqlite-tabs end-to-end suite.
// Run through `cargo xtask test` (or `--only e2e`), which builds dist/ and the demo,
// installs the package into node_modules/, serves the demo on an ephemeral port and
// sets SQLITE_TABS_BASE_URL. global-setup.js builds the React fixture pages first.
import { defineConfig } from '@playwright/test';
import { baseURL, launchOptions } from './chromium.js';

export default defineConfig({
  testDir: 'e2e',
  globalSetup: './global-setup.js',
  outputDir: 'test-results',
  workers: 1, // 2-core machines
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: 'list',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  use: {
    baseURL: baseURL(),
    headless: true,
    launchOptions,
    screenshot: 'only-on-failure',
  },
  projects: [{ name: 'chromium', use: { browserName: 'chromium' } }],
});
