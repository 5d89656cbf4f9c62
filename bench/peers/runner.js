// Page side of the peer benchmarks (loaded by peers.html as a module). Exposes:
//
//   window.runPeer(engine, workload, params, repeats)
//     engine   'sqlite-wasm' | 'wa-sqlite'
//     workload 'open' | 'w0' | 'w1' | 'w2' | 'w3'   (see the worker files)
//     params   { page_size, journal_mode, synchronous, locking_mode }
//     -> { engine, workload, params, samples: [ms...], effectivePragmas, details: [...],
//          crossOriginIsolated }
//   w0: page clock for 10,000 `SELECT 1` round trips through the minimal worker
//   wrapper, each repeat paired with a raw echo run (details[0].ratios).
//   w1/w2/w3: one worker for all repeats (each repeat on a fresh database file);
//   a sample is the time measured inside the worker. open: a fresh worker per
//   repeat; a sample is page clock from `new Worker()` to the worker's
//   'first-query' message (sent as soon as `SELECT 1` has returned); details
//   holds the worker's breakdown (script start, import, wasm init, VFS install,
//   open + pragmas, first query) plus workerStartMs, the gap between
//   `new Worker()` and the worker's time origin.
//
//   window.checkJournal(engine, params)
//     writes 1,020 rows in one worker, then reads them from a new worker, twice:
//     'close' (database closed before the worker ends) and 'crash' (worker
//     terminated in the middle of a big uncommitted transaction that has spilled
//     to disk, so the reader must recover from the journal/WAL: it must see exactly
//     the 1,020 committed rows and pass integrity_check)
//     -> { engine, params, effectivePragmas, close: {...}, crash: {...} }
//
// Between workers the previous one is asked to release its pool's access handles
// ('release') before it is terminated, so the next one can take the pool at once.
// Every worker request has a timeout, so nothing hangs.

const WORKERS = {
  'sqlite-wasm': new URL('./sqlite-wasm-worker.js', import.meta.url),
  'wa-sqlite': new URL('./wa-sqlite-worker.js', import.meta.url),
};
const WORKLOADS = ['open', 'w0', 'w1', 'w2', 'w3'];
/** W0: round trips per sample, as ours.mjs times sqlite-tabs' `SELECT 1`. */
const W0_ROUND_TRIPS = 10000;
/** The raw floor of W0, the same echo worker as ours.mjs uses. */
const ECHO_URL = new URL('../raw/echo-worker.js', import.meta.url);
const TIMEOUT_MS = 120000;

let nextId = 1;

/** A worker plus request/response plumbing. */
class PeerWorker {
  constructor(engine) {
    const url = WORKERS[engine];
    if (!url) throw new Error(`unknown engine ${engine} (one of ${Object.keys(WORKERS).join(', ')})`);
    this.pending = new Map();
    this.createdAt = performance.now();
    this.worker = new Worker(url, { type: 'module', name: `peer-${engine}` });
    this.worker.onmessage = (ev) => {
      const msg = ev.data;
      const p = this.pending.get(msg.id);
      if (!p) return;
      if (msg.progress) {
        p.progress?.(msg, performance.now());
        return;
      }
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(Object.assign(new Error(`${engine}: ${msg.error.message}`), { workerStack: msg.error.stack }));
    };
    this.worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.failAll(new Error(`${engine} worker error: ${ev.message || 'failed to load'}`));
    };
    this.worker.onmessageerror = () => this.failAll(new Error(`${engine}: message error`));
  }

  failAll(err) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  request(workload, params = {}, { onProgress, timeoutMs = TIMEOUT_MS } = {}) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${workload}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, progress: onProgress });
      this.worker.postMessage({ id, workload, params });
    });
  }

  /** Releases the pool's handles (best effort), then ends the worker. */
  async end() {
    try {
      await this.request('release', {}, { timeoutMs: 10000 });
    } catch {
      /* terminated anyway */
    }
    this.worker.terminate();
    this.failAll(new Error('worker ended'));
  }

  kill() {
    this.worker.terminate();
    this.failAll(new Error('worker killed'));
  }
}

function samePragmas(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function runOpenSample(engine, params) {
  const t0 = performance.now();
  const w = new PeerWorker(engine);
  let firstQueryAt = null;
  try {
    const result = await w.request('open', params, {
      onProgress: (msg, at) => {
        if (msg.progress === 'first-query' && firstQueryAt === null) firstQueryAt = at;
      },
    });
    if (firstQueryAt === null) throw new Error('no first-query progress message');
    const workerStartMs = result.timeOrigin - (performance.timeOrigin + t0);
    return {
      ms: firstQueryAt - t0,
      detail: { ...result.breakdown, workerStartMs, vfsRetries: result.vfsRetries, libVersion: result.libVersion },
      effectivePragmas: result.effectivePragmas,
    };
  } finally {
    await w.end();
  }
}

/**
 * Ms for W0_ROUND_TRIPS round trips to `worker`, one message in flight: `post(i)`
 * sends, the answer's data goes to `check`.
 */
async function timeRoundTrips(worker, post, check) {
  const saved = worker.onmessage;
  try {
    const t0 = performance.now();
    for (let i = 0; i < W0_ROUND_TRIPS; i++) {
      const ev = await new Promise((res) => {
        worker.onmessage = res;
        post(i);
      });
      check(ev.data);
    }
    return performance.now() - t0;
  } finally {
    worker.onmessage = saved;
  }
}

/**
 * W0 for a peer: `SELECT 1` through the minimal worker wrapper (worker-common.js
 * `{ sql }` -> `{ rows }`), each repeat paired with a raw echo run (numbers) just
 * before it, as ours.mjs pairs sqlite-tabs' runs; `ratios` are those pairs.
 */
async function runW0(engine, params, repeats) {
  const w = new PeerWorker(engine);
  const echo = new Worker(ECHO_URL);
  try {
    const opened = await w.request('w0-open', params);
    const samples = [];
    const echoes = [];
    const checkRows = (data) => {
      if (!Array.isArray(data?.rows) || data.rows.length !== 1) {
        throw new Error(`${engine}: SELECT 1 answered ${JSON.stringify(data)}`);
      }
    };
    const echoed = (data) => {
      if (typeof data !== 'number') throw new Error(`echo answered ${data}`);
    };
    for (let r = 0; r < repeats; r++) {
      echoes.push(await timeRoundTrips(echo, (i) => echo.postMessage(i), echoed));
      samples.push(await timeRoundTrips(w.worker, () => w.worker.postMessage({ sql: 'SELECT 1' }), checkRows));
    }
    return {
      samples,
      echoes,
      ratios: samples.map((t, i) => t / echoes[i]),
      effectivePragmas: opened.effectivePragmas,
      libVersion: opened.libVersion,
    };
  } finally {
    echo.terminate();
    await w.end();
  }
}

window.runPeer = async function runPeer(engine, workload, params = {}, repeats = 1) {
  if (!WORKERS[engine]) throw new Error(`unknown engine ${engine}`);
  if (!WORKLOADS.includes(workload)) throw new Error(`unknown workload ${workload} (one of ${WORKLOADS.join(', ')})`);
  const samples = [];
  const details = [];
  let effectivePragmas = null;
  const note = (eff) => {
    if (effectivePragmas === null) effectivePragmas = eff;
    else if (!samePragmas(effectivePragmas, eff)) throw new Error(`effective pragmas changed between repeats: ${JSON.stringify([effectivePragmas, eff])}`);
  };
  if (workload === 'w0') {
    const res = await runW0(engine, params, repeats);
    samples.push(...res.samples);
    details.push({ libVersion: res.libVersion, echoes: res.echoes, ratios: res.ratios });
    note(res.effectivePragmas);
  } else if (workload === 'open') {
    for (let r = 0; r < repeats; r++) {
      const s = await runOpenSample(engine, params);
      samples.push(s.ms);
      details.push(s.detail);
      note(s.effectivePragmas);
    }
  } else {
    const w = new PeerWorker(engine);
    try {
      for (let r = 0; r < repeats; r++) {
        const res = await w.request(workload, params);
        samples.push(res.ms);
        details.push({ libVersion: res.libVersion });
        note(res.effectivePragmas);
      }
    } finally {
      await w.end();
    }
  }
  return { engine, workload, params, samples, effectivePragmas, details, crossOriginIsolated: self.crossOriginIsolated };
};

async function durabilityRound(engine, params, close) {
  const name = `/peer-durability-${close ? 'close' : 'crash'}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}.db`;
  const writer = new PeerWorker(engine);
  let write;
  try {
    write = await writer.request('durability-write', { ...params, name, close, uncommitted: !close });
  } catch (e) {
    writer.kill();
    return { ok: false, phase: 'write', error: e.message };
  }
  if (close) await writer.end();
  else writer.kill(); // SQLite never gets to close: the reader must recover
  const reader = new PeerWorker(engine);
  try {
    const read = await reader.request('durability-read', { ...params, name });
    const ok = read.rows === write.rows && read.sum === (write.rows * (write.rows - 1)) / 2 && read.integrity === 'ok';
    return { ok, write, read };
  } catch (e) {
    return { ok: false, phase: 'read', write, error: e.message };
  } finally {
    await reader.end();
  }
}

window.checkJournal = async function checkJournal(engine, params = {}) {
  const close = await durabilityRound(engine, params, true);
  const crash = await durabilityRound(engine, params, false);
  return {
    engine,
    params,
    effectivePragmas: close.write?.effectivePragmas ?? crash.write?.effectivePragmas ?? null,
    close,
    crash,
  };
};

window.peersReady = true;
