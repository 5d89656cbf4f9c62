// A blank page on the served origin for the benchmark scripts, with COOP/COEP so
// that timers are fine-grained (and measureUserAgentSpecificMemory works).
import { baseURL } from '../chromium.js';

/** Opens a new page of `context` on an empty, cross-origin-isolated document. */
export async function isolatedBlankPage(context, title = 'bench') {
  const page = await context.newPage();
  await page.route('**/blank.html', (route) =>
    route.fulfill({
      contentType: 'text/html',
      headers: {
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp',
      },
      body: `<!doctype html><title>${title}</title>`,
    }),
  );
  await page.goto(`${baseURL()}/blank.html`);
  // A registered route makes Playwright intercept every later request of the
  // page (each fetch then waits on a round trip to Node): drop it once loaded.
  await page.unroute('**/blank.html');
  return page;
}
