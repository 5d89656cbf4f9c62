// A/B of two builds (not a benchmark): serves one package folder as /dist/
// with COOP/COEP and no caching, every other path as an empty page. Start one
// per build, e.g. a copy of dist/ from an older commit and the current one:
//   node bench/serve-dist.mjs 8201 /tmp/dist-old & node bench/serve-dist.mjs 8202 ../dist &
// then run a probe against each in turn (interleaved: this machine's speed drifts):
//   SQLITE_TABS_BASE_URL=http://127.0.0.1:8201 REPS=5 QUIET=1 node bench/w7probe.mjs
//   SQLITE_TABS_BASE_URL=http://127.0.0.1:8201 RUNS=10 ONLY=close node bench/failover.mjs
// CACHE_CONTROL='max-age=3600' serves the package cacheable instead (to see
// what the HTTP cache and V8's code cache change).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [port, dir] = process.argv.slice(2);
if (!port || !dir) throw new Error('usage: node bench/serve-dist.mjs <port> <package folder>');
const root = path.resolve(dir);
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
const headers = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cache-Control': process.env.CACHE_CONTROL ?? 'no-store',
};
http
  .createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    if (!pathname.startsWith('/dist/')) {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html' });
      res.end('<!doctype html>');
      return;
    }
    const file = path.join(root, path.normalize(decodeURIComponent(pathname.slice('/dist/'.length))));
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403, headers);
      res.end();
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': types[path.extname(file)] ?? 'application/octet-stream' });
      res.end(data);
    });
  })
  .listen(Number(port), '127.0.0.1', () => console.log(`serving ${root} as /dist/ on http://127.0.0.1:${port}`));
