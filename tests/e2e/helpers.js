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

/**
 * Waits (at most `timeoutMs`) until the demo in `page` has its database open: resolves to
 * 'open', the status line's error text, or a 'not open after …' message.
 */
export async function demoState(page, timeoutMs) {
  return page
    .waitForFunction(
      () => {
        if (window.db) return 'open';
        const status = document.querySelector('[data-testid="status"]');
        return status && status.dataset.state === 'error' ? status.textContent : null;
      },
      null,
      { timeout: timeoutMs, polling: 100 },
    )
    .then(
      (h) => h.jsonValue(),
      (e) => `not open after ${timeoutMs} ms (${e.message.split('\n')[0]})`,
    );
}

/** A string unlikely to occur twice: marks the rows one test run writes. */
export function uniqueMarker(prefix = 'e2e') {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

// ---------------------------------------------------------------------------
// Multi-tab helpers (failover.spec.js, stress.spec.js, bench/failover.mjs).

/** Opens `n` demo tabs in `context`, one after another, each with its database open. */
export async function openDemoTabs(context, n, label = 'tab') {
  const tabs = [];
  for (let i = 0; i < n; i++) tabs.push(await openDemoTab(context, `${label} ${i}`));
  return tabs;
}

/** Opens one demo tab in `context` with its page console forwarded under `label`. */
export async function openDemoTab(context, label) {
  const page = await context.newPage();
  forwardPageErrors(page, label);
  await openDemo(page);
  return page;
}

/** `db.isLeader` of every tab (null for a tab whose page cannot answer, e.g. mid-reload). */
export function leaderFlags(tabs) {
  return Promise.all(
    tabs.map((p) => p.evaluate(() => (window.db ? window.db.isLeader : null)).catch(() => null)),
  );
}

/**
 * Polls until exactly one of `tabs` says it leads; returns its index. Throws with the
 * flags seen last when that does not happen within `timeoutMs`.
 */
export async function waitForOneLeader(tabs, timeoutMs = 20_000, what = 'tabs') {
  const deadline = Date.now() + timeoutMs;
  let flags = [];
  for (;;) {
    flags = await leaderFlags(tabs);
    if (flags.filter((f) => f === true).length === 1) return flags.indexOf(true);
    if (Date.now() > deadline) {
      throw new Error(
        `expected exactly one leader among ${what} within ${timeoutMs} ms; isLeader flags: ${JSON.stringify(flags)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Crashes the renderer of `page` through CDP and waits for the page's `crash` event.
 * The CDP call itself never gets an answer (in Chromium 14x it stays pending rather than
 * rejecting), so it is not awaited.
 */
export async function crashPage(context, page, timeoutMs = 10_000) {
  const cdp = await context.newCDPSession(page);
  const crashed = page.waitForEvent('crash', { timeout: timeoutMs });
  cdp.send('Page.crash').catch(() => {});
  await crashed;
}

/**
 * Starts, inside `page`, a loop of autocommit writes `INSERT INTO <table>(tab, n)` with
 * n = 0, 1, 2, ... keeping `concurrency` writes in flight, until `stopWriteLoop` (or
 * `max` writes issued). Every write is recorded as acknowledged (`acked`) or rejected
 * (`rejected`, with name and code). State lives in `window.__loop`.
 */
export async function startWriteLoop(page, { table, tab, concurrency = 10, max = Infinity }) {
  await page.evaluate(
    ({ table, tab, concurrency, max }) => {
      const st = {
        issued: 0,
        acked: [],
        rejected: [],
        pending: new Set(),
        stop: false,
        done: false,
        closeMark: null,
      };
      const sql = `INSERT INTO ${table} (tab, n) VALUES (?, ?)`;
      const one = (n) => {
        st.pending.add(n);
        let p;
        try {
          p = window.db.run(sql, [tab, n]);
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(
          () => st.acked.push(n),
          (e) =>
            st.rejected.push({
              n,
              name: e && e.name,
              code: e && e.code,
              message: String((e && e.message) || e),
            }),
        ).finally(() => {
          st.pending.delete(n);
          pump();
        });
      };
      const pump = () => {
        while (!st.stop && st.pending.size < concurrency && st.issued < (max ?? Infinity)) {
          one(st.issued++);
        }
        if ((st.stop || st.issued >= (max ?? Infinity)) && st.pending.size === 0) st.done = true;
      };
      window.__loop = st;
      pump();
    },
    { table, tab, concurrency, max: Number.isFinite(max) ? max : null },
  );
}

/** A snapshot of the write loop of `page` (see startWriteLoop). */
export function writeLoopState(page) {
  return page.evaluate(() => {
    const st = window.__loop;
    const afterMark = st.closeMark == null ? 0 : st.acked.filter((n) => n >= st.closeMark).length;
    return {
      issued: st.issued,
      acked: st.acked.slice(),
      rejected: st.rejected.slice(),
      pending: [...st.pending],
      done: st.done,
      closeMark: st.closeMark,
      ackedAfterMark: afterMark,
    };
  });
}

/** Records in the loop of `page` how many writes were issued when the leader went away. */
export function markWriteLoop(page) {
  return page.evaluate(() => {
    window.__loop.closeMark = window.__loop.issued;
  });
}

/**
 * Stops the write loop of `page` and waits (at most `timeoutMs`) until every write it
 * issued has settled. Returns the final state; `state.done` is false if some are still
 * pending after the wait (their n are in `state.pending`).
 */
export async function stopWriteLoop(page, timeoutMs = 45_000) {
  await page.evaluate(() => {
    window.__loop.stop = true;
    if (window.__loop.pending.size === 0) window.__loop.done = true;
  });
  await page
    .waitForFunction(() => window.__loop.done, null, { timeout: timeoutMs, polling: 100 })
    .catch(() => {});
  return writeLoopState(page);
}

/** Counts rejections by code: { TIMEOUT: 2, ... }. */
export function countCodes(rejected) {
  const counts = {};
  for (const r of rejected) {
    const key = r.code ?? `(no code, name ${r.name})`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/**
 * Checks, from `page`, that every acknowledged write (tab, n) of `loops` ({ tab, acked }[])
 * is in `table` exactly once. Returns a report; `problems` lists what is wrong.
 */
export async function checkWrites(page, table, loops) {
  const { rows, dups, integrity } = await page.evaluate(async (table) => {
    const rows = await window.db.queryRaw(`SELECT tab, n FROM ${table}`);
    const dups = await window.db.query(
      `SELECT tab, n, count(*) AS c FROM ${table} GROUP BY tab, n HAVING count(*) > 1 ORDER BY tab, n`,
    );
    const integrity = await window.db.query('PRAGMA integrity_check');
    return { rows: rows.rows, dups, integrity };
  }, table);
  const present = new Set(rows.map(([tab, n]) => `${tab}:${n}`));
  const problems = [];
  let ackedTotal = 0;
  let unackedPresent = 0;
  for (const { tab, acked, rejected = [] } of loops) {
    ackedTotal += acked.length;
    const missing = acked.filter((n) => !present.has(`${tab}:${n}`));
    if (missing.length) {
      problems.push(
        `${missing.length} acknowledged writes of tab ${tab} are missing: n = ${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', ...' : ''}`,
      );
    }
    unackedPresent += rejected.filter((r) => present.has(`${tab}:${r.n}`)).length;
  }
  if (dups.length) {
    problems.push(
      `${dups.length} writes were applied more than once: ${JSON.stringify(dups.slice(0, 10))}`,
    );
  }
  const integrityText = integrity.map((r) => Object.values(r)[0]).join('; ');
  if (integrityText !== 'ok') problems.push(`PRAGMA integrity_check: ${integrityText}`);
  return { rows: rows.length, ackedTotal, unackedPresent, dups, integrity: integrityText, problems };
}

/** `db.epoch` of every tab (null for a tab whose page cannot answer). */
export function epochs(tabs) {
  return Promise.all(
    tabs.map((p) => p.evaluate(() => (window.db ? window.db.epoch : null)).catch(() => null)),
  );
}

/**
 * Polls until every tab of `tabs` is connected to a leader epoch above `epoch` (that is,
 * the router brokered it a port to the new leader). Returns null when that happened, or
 * a message with the epochs seen last.
 */
export async function waitForEpochAbove(tabs, epoch, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await epochs(tabs);
    if (seen.every((e) => typeof e === 'number' && e > epoch)) return null;
    if (Date.now() > deadline) {
      const flags = await leaderFlags(tabs);
      return `after ${timeoutMs} ms the tabs are still not connected to a leader epoch above ${epoch}: db.epoch = ${JSON.stringify(seen)}, db.isLeader = ${JSON.stringify(flags)}`;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Collects the console errors/warnings and uncaught exceptions of `page` (across reloads)
 * into `sink` ({ label, text }[]) instead of printing each: for tests that produce many.
 */
export function collectPageErrors(page, label, sink) {
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      sink.push({ label, text: `console.${msg.type()}: ${msg.text()}` });
    }
  });
  page.on('pageerror', (err) => sink.push({ label, text: `pageerror: ${err.stack || err}` }));
}

/** Groups collected messages by their first line: "count x message (tabs)". */
export function summarizeMessages(sink, max = 30) {
  const groups = new Map();
  for (const { label, text } of sink) {
    const key = text.split('\n')[0].replace(/\d{3,}/g, 'N');
    const g = groups.get(key) ?? { count: 0, labels: new Set(), example: text };
    g.count++;
    g.labels.add(label);
    groups.set(key, g);
  }
  return [...groups.entries()]
    .sort((a, b) => b[1].count - a[1].count)
    .slice(0, max)
    .map(([key, g]) => `${g.count} x ${key} (${[...g.labels].join(', ')})`);
}

/** The browser's worker targets ("shared_worker: <name>", "worker: <name>"), for diagnosis. */
export async function workerTargets(context) {
  const cdp = await context.browser().newBrowserCDPSession();
  try {
    const { targetInfos } = await cdp.send('Target.getTargets');
    return targetInfos
      .filter((t) => t.type.includes('worker'))
      .map((t) => `${t.type}: ${t.title || t.url}`);
  } finally {
    await cdp.detach().catch(() => {});
  }
}
