// The multi-tab coordinator under failure: change notifications to every tab, the leader
// closing or crashing under a continuous write load from the followers (every acknowledged
// write present exactly once), the leader dying in the middle of interactive transactions,
// the router restarting while a transaction's statement runs, and 29 of 30 tabs closing at
// once.
//
// Each Playwright test gets a fresh browser context (fresh OPFS); table names are still
// unique per test so no test depends on another.
import { test, expect } from '@playwright/test';
import {
  checkWrites,
  countCodes,
  crashPage,
  demoState,
  epochs,
  forwardPageErrors,
  leaderFlags,
  markWriteLoop,
  openDemoTab,
  openDemoTabs,
  startWriteLoop,
  stopWriteLoop,
  waitForEpochAbove,
  waitForOneLeader,
  workerTargets,
  writeLoopState,
} from './helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Target ids of the running SharedWorkers. */
async function sharedWorkerIds(context) {
  const cdp = await context.browser().newBrowserCDPSession();
  try {
    const { targetInfos } = await cdp.send('Target.getTargets');
    return targetInfos.filter((t) => t.type === 'shared_worker').map((t) => t.targetId);
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/**
 * Stops every SharedWorker (CDP Target.closeTarget), as the browser may stop
 * one whose process dies or is reclaimed. Crashing the tab that started the
 * router does not: Chromium keeps the SharedWorker running.
 */
async function closeSharedWorkers(context) {
  const cdp = await context.browser().newBrowserCDPSession();
  try {
    for (const targetId of await sharedWorkerIds(context)) {
      await cdp.send('Target.closeTarget', { targetId });
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns the last value. */
async function pollUntil(fn, timeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let value;
  for (;;) {
    value = await fn();
    if (value || Date.now() > deadline) return value;
    await sleep(intervalMs);
  }
}

test('3 tabs: writes from every tab are seen in every tab, every subscriber gets every commit once', async ({
  context,
}) => {
  const tabs = await openDemoTabs(context, 3);
  await tabs[0].evaluate(() =>
    window.db.exec(
      'CREATE TABLE notify_t (id INTEGER PRIMARY KEY, tab INTEGER NOT NULL, n INTEGER NOT NULL)',
    ),
  );
  // Subscribe in every tab (the writers too), and a live count through watch().
  for (const page of tabs) {
    await page.evaluate(() => {
      window.__events = [];
      window.__watchCount = null;
      window.db.subscribe(['notify_t'], (ev) =>
        window.__events.push({ seq: ev.seq, tables: [...ev.tables], resync: !!ev.resync }),
      );
      window.db.watch('SELECT count(*) AS n FROM notify_t', [], (rows) => {
        window.__watchCount = rows[0].n;
      });
    });
  }

  // Every tab writes 10 rows, all in flight at once, all tabs at the same time.
  const PER_TAB = 10;
  const TOTAL = PER_TAB * tabs.length;
  await Promise.all(
    tabs.map((page, i) =>
      page.evaluate(
        ({ i, PER_TAB }) =>
          Promise.all(
            Array.from({ length: PER_TAB }, (_, n) =>
              window.db.run('INSERT INTO notify_t (tab, n) VALUES (?, ?)', [i, n]),
            ),
          ),
        { i, PER_TAB },
      ),
    ),
  );

  // Every write is visible from every tab.
  const expectedRows = [];
  for (let i = 0; i < tabs.length; i++) for (let n = 0; n < PER_TAB; n++) expectedRows.push([i, n]);
  for (const [i, page] of tabs.entries()) {
    const rows = await page.evaluate(
      async () => (await window.db.queryRaw('SELECT tab, n FROM notify_t ORDER BY tab, n')).rows,
    );
    expect(rows, `rows read in tab ${i}`).toEqual(expectedRows);
  }

  // Every tab hears of all 30 commits (poll), then nothing more arrives (no duplicates).
  await pollUntil(
    async () =>
      (await Promise.all(tabs.map((p) => p.evaluate(() => window.__events.length)))).every(
        (n) => n >= TOTAL,
      ),
    10_000,
  );
  await sleep(500);
  const events = await Promise.all(tabs.map((p) => p.evaluate(() => window.__events)));
  const seqSets = events.map((evs) => [...new Set(evs.map((e) => e.seq))].sort((a, b) => a - b));
  for (const [i, evs] of events.entries()) {
    const seqs = evs.map((e) => e.seq);
    const dupes = seqs.filter((s, k) => seqs.indexOf(s) !== k);
    expect.soft(dupes, `tab ${i} got these commit seqs more than once`).toEqual([]);
    expect.soft(evs.filter((e) => e.resync), `tab ${i} got resync events`).toEqual([]);
    expect
      .soft(
        evs.filter((e) => !e.tables.includes('notify_t')),
        `tab ${i} got events not naming notify_t`,
      )
      .toEqual([]);
    expect
      .soft(seqSets[i].length, `distinct commit seqs seen by tab ${i}: ${JSON.stringify(seqs)}`)
      .toBe(TOTAL);
    expect.soft(seqSets[i], `tab ${i} saw a different set of commits than tab 0`).toEqual(seqSets[0]);
  }
  // One seq per commit, increasing by one: the 30 inserts are 30 consecutive seqs.
  const first = seqSets[0][0];
  expect
    .soft(seqSets[0], 'the 30 commits should carry 30 consecutive seqs')
    .toEqual(Array.from({ length: TOTAL }, (_, k) => first + k));

  // The live query converged in every tab.
  for (const [i, page] of tabs.entries()) {
    await expect
      .poll(() => page.evaluate(() => window.__watchCount), {
        message: `watch('SELECT count(*) ...') in tab ${i}`,
        timeout: 10_000,
      })
      .toBe(TOTAL);
  }
});

/**
 * 3 tabs; the two followers write continuously (10 writes in flight each); once both
 * have 150 writes acknowledged, `kill` removes the leader; the loops go on until each
 * follower has 150 more acknowledged writes issued after the kill; then every
 * acknowledged write must be in the table exactly once.
 */
async function failoverUnderLoad(context, table, kill) {
  const tabs = await openDemoTabs(context, 3);
  const leader = await waitForOneLeader(tabs);
  const followers = tabs.filter((_, i) => i !== leader);
  const names = ['A', 'B'];
  await followers[0].evaluate(
    (table) =>
      window.db.exec(
        `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, tab TEXT NOT NULL, n INTEGER NOT NULL)`,
      ),
    table,
  );
  for (const [i, page] of followers.entries()) {
    await startWriteLoop(page, { table, tab: names[i], concurrency: 10 });
  }

  const BEFORE = 150;
  const AFTER = 150;
  const warm = await pollUntil(
    async () =>
      (await Promise.all(followers.map(writeLoopState))).every((s) => s.acked.length >= BEFORE),
    30_000,
  );
  const atKill = await Promise.all(followers.map(writeLoopState));
  expect(
    warm,
    `both followers should get ${BEFORE} writes acknowledged before the kill; acked: ${atKill.map((s) => s.acked.length)}, rejected: ${JSON.stringify(atKill.map((s) => countCodes(s.rejected)))}`,
  ).toBeTruthy();

  const [epochBefore] = await epochs([followers[0]]);
  await Promise.all(followers.map(markWriteLoop));
  const tKill = Date.now();
  await kill(tabs[leader]);
  const newLeader = await waitForOneLeader(followers, 20_000, 'the two followers').catch((e) => e);
  const tLeader = Date.now();
  // Both followers must get connected to the new leader (a new epoch brokered by the router).
  const notConnected = await waitForEpochAbove(followers, epochBefore, 20_000);

  // Let the loops run until the new leader has served AFTER writes issued after the kill.
  const served =
    !notConnected &&
    (await pollUntil(
      async () =>
        (await Promise.all(followers.map(writeLoopState))).every((s) => s.ackedAfterMark >= AFTER),
      30_000,
    ));
  // Writes time out after 30 s (the demo's default timeoutMs): all must have settled by 35 s.
  const finals = await Promise.all(followers.map((p) => stopWriteLoop(p, 35_000)));
  const loops = finals.map((s, i) => ({ tab: names[i], ...s }));

  const issued = finals.reduce((a, s) => a + s.issued, 0);
  const rejected = finals.flatMap((s) => s.rejected);
  const summary = {
    issued,
    acked: finals.reduce((a, s) => a + s.acked.length, 0),
    rejected: countCodes(rejected),
    issuedBeforeKill: finals.map((s) => s.closeMark),
    ackedAfterKill: finals.map((s) => s.ackedAfterMark),
    pendingAtEnd: finals.map((s) => s.pending.length),
    newLeaderAfterMs: tLeader - tKill,
    epochs: { before: epochBefore, after: await epochs(followers) },
  };

  expect.soft(newLeader instanceof Error ? newLeader.message : 'ok', 'a follower takes over').toBe('ok');
  expect.soft(notConnected, 'both followers connect to the new leader').toBeNull();
  // Read from a surviving tab (the new leader if there is one).
  const reader = followers[newLeader instanceof Error ? 0 : newLeader];
  console.log(`[${table}] ${JSON.stringify(summary)}`);
  if (rejected.length) {
    console.log(`[${table}] first rejections: ${JSON.stringify(rejected.slice(0, 5))}`);
  }
  if (notConnected) {
    console.log(`[${table}] worker targets now: ${JSON.stringify(await workerTargets(context))}`);
  }
  // Without a connected leader every query would only time out: the data cannot be checked.
  expect(notConnected, 'no tab serves requests after the kill: the data cannot be checked').toBeNull();
  const check = await checkWrites(reader, table, loops);
  console.log(`[${table}] rows ${check.rows}, rejected-but-present ${check.unackedPresent}`);

  for (const [i, s] of finals.entries()) {
    expect
      .soft(s.pending, `writes of follower ${names[i]} still pending 35 s after the loop stopped`)
      .toEqual([]);
  }
  expect.soft(issued, 'writes issued in total across the failover').toBeGreaterThanOrEqual(500);
  expect
    .soft(served, `each follower gets ${AFTER} writes issued after the kill acknowledged (${JSON.stringify(summary)})`)
    .toBeTruthy();
  expect
    .soft(
      rejected.filter((r) => r.name !== 'SqliteTabsError' || !['TIMEOUT', 'LEADER_LOST'].includes(r.code)),
      'rejections other than SqliteTabsError TIMEOUT/LEADER_LOST',
    )
    .toEqual([]);
  expect.soft(check.problems, `exactly-once check of ${table}`).toEqual([]);
  expect.soft(check.integrity).toBe('ok');
}

test('the leader closes while both followers write continuously: acknowledged writes are there exactly once', async ({
  context,
}) => {
  test.setTimeout(120_000);
  await failoverUnderLoad(context, 'w_close', (page) => page.close());
});

test('the leader renderer crashes while both followers write continuously: acknowledged writes are there exactly once', async ({
  context,
}) => {
  test.setTimeout(120_000);
  await failoverUnderLoad(context, 'w_crash', (page) => crashPage(context, page));
});

test('the leader closes in the middle of its own interactive transaction: it is rolled back, queued requests go on', async ({
  context,
}) => {
  const tabs = await openDemoTabs(context, 3);
  const leader = await waitForOneLeader(tabs);
  const L = tabs[leader];
  const [F1, F2] = tabs.filter((_, i) => i !== leader);
  await F1.evaluate(() =>
    window.db.exec('CREATE TABLE tx_leader (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'),
  );

  // The leader's tab opens a transaction, writes A and never finishes.
  await L.evaluate(() => {
    window.__tx = window.db
      .transaction(async (tx) => {
        await tx.run('INSERT INTO tx_leader (v) VALUES (?)', ['A']);
        window.__txHolding = true;
        await new Promise(() => {});
      })
      .catch(() => {});
  });
  await L.waitForFunction(() => window.__txHolding === true, null, { timeout: 10_000 });

  // A follower's write queues behind the transaction.
  await F2.evaluate(() => {
    window.__queued = window.db.run('INSERT INTO tx_leader (v) VALUES (?)', ['queued']).then(
      () => ({ ok: true }),
      (e) => ({ ok: false, name: e.name, code: e.code, message: e.message }),
    );
  });
  await sleep(300);
  const early = await F2.evaluate(() =>
    Promise.race([window.__queued, new Promise((r) => setTimeout(() => r('pending'), 50))]),
  );
  expect.soft(early, 'the write waits behind the open transaction').toBe('pending');

  await L.close();
  const newLeader = await waitForOneLeader([F1, F2], 20_000, 'the two followers');

  const queued = await F2.evaluate(() =>
    Promise.race([
      window.__queued,
      new Promise((r) => setTimeout(() => r('still pending after 35 s'), 35_000)),
    ]),
  );
  expect(queued, 'the queued write is served by the new leader').toEqual({ ok: true });

  // Both tabs keep reading and writing; A is gone with the transaction.
  await F1.evaluate(() => window.db.run('INSERT INTO tx_leader (v) VALUES (?)', ['after F1']));
  await F2.evaluate(() => window.db.run('INSERT INTO tx_leader (v) VALUES (?)', ['after F2']));
  for (const [name, page] of [
    ['F1', F1],
    ['F2', F2],
  ]) {
    const rows = await page.evaluate(() => window.db.query('SELECT v FROM tx_leader ORDER BY id'));
    expect(rows, `rows read in ${name} (new leader: ${newLeader === 0 ? 'F1' : 'F2'})`).toEqual([
      { v: 'queued' },
      { v: 'after F1' },
      { v: 'after F2' },
    ]);
  }
});

test('a follower holds an interactive transaction when the leader closes: it rejects with LEADER_LOST, nothing of it stays', async ({
  context,
}) => {
  const tabs = await openDemoTabs(context, 3);
  const leader = await waitForOneLeader(tabs);
  const L = tabs[leader];
  const [F1, F2] = tabs.filter((_, i) => i !== leader);
  await F1.evaluate(() =>
    window.db.exec('CREATE TABLE tx_follower (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'),
  );

  // F1 opens a transaction, writes A, then waits for the test to release it and writes B.
  await F1.evaluate(() => {
    let release;
    const released = new Promise((r) => (release = r));
    window.__release = release;
    window.__txOutcome = null;
    window.db
      .transaction(async (tx) => {
        await tx.run('INSERT INTO tx_follower (v) VALUES (?)', ['A']);
        window.__txHolding = true;
        await released;
        await tx.run('INSERT INTO tx_follower (v) VALUES (?)', ['B']);
        return 'committed';
      })
      .then(
        (value) => (window.__txOutcome = { ok: true, value }),
        (e) => (window.__txOutcome = { ok: false, name: e.name, code: e.code, message: e.message }),
      );
  });
  await F1.waitForFunction(() => window.__txHolding === true, null, { timeout: 10_000 });

  // F2's write queues behind F1's transaction.
  await F2.evaluate(() => {
    window.__queued = window.db.run('INSERT INTO tx_follower (v) VALUES (?)', ['queued']).then(
      () => ({ ok: true }),
      (e) => ({ ok: false, name: e.name, code: e.code, message: e.message }),
    );
  });
  await sleep(300);

  await L.close();
  await waitForOneLeader([F1, F2], 20_000, 'the two followers');

  // F2's write is served by the new leader (F1's transaction died with the old one).
  const queued = await F2.evaluate(() =>
    Promise.race([
      window.__queued,
      new Promise((r) => setTimeout(() => r('still pending after 35 s'), 35_000)),
    ]),
  );
  expect.soft(queued, "F2's queued write is served by the new leader").toEqual({ ok: true });

  // F1's transaction goes on: its next statement (or its commit) must fail with LEADER_LOST.
  await F1.evaluate(() => window.__release());
  await F1.waitForFunction(() => window.__txOutcome !== null, null, { timeout: 35_000 }).catch(
    () => {},
  );
  const outcome = await F1.evaluate(() => window.__txOutcome);
  expect.soft(outcome, "F1's transaction() outcome").toMatchObject({
    ok: false,
    name: 'SqliteTabsError',
    code: 'LEADER_LOST',
  });

  // Neither A nor B is there; both tabs keep reading and writing.
  await F1.evaluate(() => window.db.run('INSERT INTO tx_follower (v) VALUES (?)', ['after F1']));
  await F2.evaluate(() => window.db.run('INSERT INTO tx_follower (v) VALUES (?)', ['after F2']));
  for (const [name, page] of [
    ['F1', F1],
    ['F2', F2],
  ]) {
    const rows = await page.evaluate(() => window.db.query('SELECT v FROM tx_follower ORDER BY id'));
    expect(rows, `rows read in ${name}`).toEqual([
      { v: 'queued' },
      { v: 'after F1' },
      { v: 'after F2' },
    ]);
  }
});

test('the first tab (it started the router) crashes as a follower: the others go on and a new tab can open', async ({
  context,
}) => {
  const tabs = await openDemoTabs(context, 3);
  // The first tab created the SharedWorker router; make another tab the leader.
  await waitForOneLeader(tabs);
  if ((await leaderFlags([tabs[0]]))[0]) await tabs[0].evaluate(() => window.db.stepDown());
  const leader = await pollUntil(async () => {
    const flags = await leaderFlags(tabs);
    const i = flags.indexOf(true);
    return i > 0 && flags.filter(Boolean).length === 1 ? i : null;
  }, 20_000);
  expect(leader, 'a tab other than the first leads').not.toBeNull();
  await tabs[leader].evaluate(() =>
    window.db.exec('CREATE TABLE host_crash (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'),
  );
  const before = await workerTargets(context);

  await crashPage(context, tabs[0]);
  const rest = tabs.slice(1);
  // The survivors still read and write.
  for (const [i, page] of rest.entries()) {
    const r = await page.evaluate(
      (v) =>
        Promise.race([
          window.db.run('INSERT INTO host_crash (v) VALUES (?)', [v]).then(() => 'ok', (e) => `${e.code}: ${e.message}`),
          new Promise((r) => setTimeout(() => r('no answer in 10 s'), 10_000)),
        ]),
      `survivor ${i}`,
    );
    expect.soft(r, `a write from surviving tab ${i + 1}`).toBe('ok');
  }
  const after = await workerTargets(context);
  console.log(`[host_crash] worker targets before: ${JSON.stringify(before)}, after: ${JSON.stringify(after)}`);

  // A tab opened now joins the database and sees the rows.
  const fresh = await context.newPage();
  forwardPageErrors(fresh, 'new tab');
  await fresh.goto('/');
  const state = await demoState(fresh, 30_000);
  expect(state, 'a new tab opens the database after the crash').toBe('open');
  const rows = await fresh.evaluate(() => window.db.query('SELECT v FROM host_crash ORDER BY id'));
  expect(rows).toEqual([{ v: 'survivor 0' }, { v: 'survivor 1' }]);
});

test('the router restarts while a transaction statement runs: it runs once, the transaction commits', async ({
  context,
}) => {
  const tabs = await openDemoTabs(context, 2);
  const leader = await waitForOneLeader(tabs);
  // A statement that keeps the leader's worker busy for a few seconds: the
  // router stops and a new one starts meanwhile, each tab gets a new port to
  // the same leader and sends its unanswered requests again, and the answer
  // to the original, sent on the old port, is lost. The leader's own tab
  // sends straight to its worker, but re-sends on reconnecting too.
  const slow =
    'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) ' +
    'INSERT INTO router_restart (who, n) SELECT ?, count(*) FROM c';
  await tabs[0].evaluate(() => window.db.exec('CREATE TABLE router_restart (who TEXT NOT NULL, n INTEGER NOT NULL)'));
  for (const [who, writer] of [
    ['follower', tabs[1 - leader]],
    ['leader', tabs[leader]],
  ]) {
    await writer.evaluate(
      ([slow, who]) => {
        window.__tx = window.db
          .transaction(async (tx) => {
            const t0 = performance.now();
            await tx.run(slow, [15_000_000, who]);
            const ms = performance.now() - t0;
            await tx.run('INSERT INTO router_restart (who, n) VALUES (?, -1)', [who]);
            return ms;
          })
          .then(
            (ms) => ({ ok: true, ms }),
            (e) => ({ ok: false, code: e.code, message: e.message }),
          );
      },
      [slow, who],
    );
    await sleep(300);
    const before = await sharedWorkerIds(context);
    expect(before).toHaveLength(1);
    await closeSharedWorkers(context);
    // The tabs see the router die (its Web Lock) and start a new one.
    const restarted = await pollUntil(async () => {
      const now = await sharedWorkerIds(context);
      return now.length === 1 && now[0] !== before[0];
    }, 10_000);
    expect(restarted, `a new router runs (${who})`).toBe(true);
    const result = await writer.evaluate(() => window.__tx);
    console.log(`[router_restart] ${who}: ${JSON.stringify(result)}`);
    expect(result.ok, `${who}: ${JSON.stringify(result)}`).toBe(true);
  }
  const rows = await tabs[0].evaluate(() => window.db.query('SELECT who, n FROM router_restart ORDER BY rowid'));
  expect(rows).toEqual([
    { who: 'follower', n: 15_000_000 },
    { who: 'follower', n: -1 },
    { who: 'leader', n: 15_000_000 },
    { who: 'leader', n: -1 },
  ]);
});

test('30 tabs, 29 close (the leader among them): the survivor leads and serves reads and writes', async ({
  context,
}) => {
  test.setTimeout(180_000);
  const N = 30;
  const BATCH = 3;
  const tabs = [];
  for (let i = 0; i < N; i += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, N - i) }, (_, k) =>
      openDemoTab(context, `tab ${i + k}`),
    );
    tabs.push(...(await Promise.all(batch)));
  }
  const leader = await waitForOneLeader(tabs, 20_000, `${N} tabs`);
  await tabs[N - 1].evaluate(async () => {
    await window.db.exec('CREATE TABLE many (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    await window.db.run('INSERT INTO many (v) VALUES (?)', ['before']);
  });

  // The survivor: a follower. Close everything else in batches, in random order, the leader
  // somewhere in the middle.
  const survivorIndex = leader === N - 1 ? 0 : N - 1;
  const survivor = tabs[survivorIndex];
  const others = tabs.filter((_, i) => i !== survivorIndex && i !== leader);
  others.sort(() => Math.random() - 0.5);
  others.splice(Math.floor(others.length / 2), 0, tabs[leader]);
  for (let i = 0; i < others.length; i += 6) {
    await Promise.all(others.slice(i, i + 6).map((p) => p.close()));
  }

  await waitForOneLeader([survivor], 20_000, 'the surviving tab');
  const result = await survivor.evaluate(async () => {
    await window.db.run('INSERT INTO many (v) VALUES (?)', ['after']);
    return window.db.query('SELECT v FROM many ORDER BY id');
  });
  expect(result).toEqual([{ v: 'before' }, { v: 'after' }]);
  expect(await leaderFlags([survivor])).toEqual([true]);
});
