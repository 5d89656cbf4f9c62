// Development static server for the peer benchmarks (not the product's server).
//
//   node bench/peers/serve.mjs [--port 8093]        # then open
//   http://127.0.0.1:8093/bench/peers/peers.html
//
// Serves the repository root on 127.0.0.1 only, so the pages live at
// /bench/peers/... and the engines at /bench/peers/node_modules/<pkg>/..., the
// layout `cargo xtask serve` is expected to reproduce. Every response carries
// COOP: same-origin + COEP: require-corp (cross-origin isolation: 5 µs
// performance.now() instead of 100 µs) and Cache-Control: no-store, with the
// MIME types workers and WebAssembly streaming compilation need. GET/HEAD only;
// paths outside the repository root are refused.
//
// Also importable: `startServer({ port })` resolves to `{ url, close() }` (run.mjs
// uses it with --serve).
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/peers/../..). */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.cjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

const COMMON_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

function send(res, status, body, headers = {}) {
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', ...headers });
  res.end(body);
}

async function handle(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
  } catch {
    return send(res, 400, 'bad request\n');
  }
  if (pathname === '/' || pathname === '/bench/peers' || pathname === '/bench/peers/') {
    return send(res, 302, '', { Location: '/bench/peers/peers.html' });
  }
  const file = resolve(join(ROOT, pathname));
  if (file !== ROOT && !file.startsWith(ROOT + sep)) return send(res, 403, 'forbidden\n');
  let info;
  try {
    info = await stat(file);
  } catch {
    return send(res, 404, 'not found\n');
  }
  if (!info.isFile()) return send(res, 404, 'not found\n');
  res.writeHead(200, {
    ...COMMON_HEADERS,
    'Content-Type': MIME[extname(file).toLowerCase()] || 'application/octet-stream',
    'Content-Length': info.size,
  });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

/** Starts the server on 127.0.0.1:`port`; resolves to `{ url, close }`. */
export function startServer({ port = 8093 } = {}) {
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) send(res, 500, `${e}\n`);
      else res.destroy();
    });
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      const { port: actual } = server.address();
      ok({
        url: `http://127.0.0.1:${actual}`,
        close: () => new Promise((done) => server.close(() => done())),
        server,
      });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = Number(i > 0 ? process.argv[i + 1] : process.env.PORT || 8093);
  const { url } = await startServer({ port });
  console.log(`serving ${ROOT} at ${url}/bench/peers/peers.html (COOP/COEP, no-store)`);
}
