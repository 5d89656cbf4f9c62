// Several tabs (pages of one browser context) sharing one database, with the
// SharedWorker router and in the fallback mode for browsers without
// SharedWorker (Chrome for Android), where tabs reach the leader's worker over
// BroadcastChannel.
import { test, expect } from '@playwright/test';
import { forwardPageErrors, openDemo, uniqueMarker } from './helpers.js';

/** Opens `n` demo tabs in `context`, one after another, each with its database open. */
async function openTabs(context, n, withSharedWorker) {
  const tabs = [];
  for (let i = 0; i < n; i++) {
    const page = await context.newPage();
    forwardPageErrors(page, `tab ${i}`);
    await openDemo(page);
    // Proves which mode ran.
    expect(await page.evaluate(() => typeof SharedWorker)).toBe(
      withSharedWorker ? 'function' : 'undefined',
    );
    tabs.push(page);
  }
  return tabs;
}

/** `db.isLeader` of every tab. */
const leaderFlags = (tabs) => Promise.all(tabs.map((p) => p.evaluate(() => window.db.isLeader)));

/**
 * Makes `l` lead instead of `r`, the first tab: the router runs in the process
 * of the tab that started it, and Chromium hands a new tab's connection to it
 * through that process's main thread, so a test that keeps the leader's main
 * thread busy needs a leader other than the router's tab.
 */
async function leadInsteadOfFirstTab(r, l) {
  expect(await r.evaluate(() => window.db.isLeader)).toBe(true);
  await r.evaluate(() => window.db.stepDown());
  await expect.poll(() => l.evaluate(() => window.db.isLeader), { timeout: 20_000 }).toBe(true);
}

/**
 * Spins `page`'s main thread for `ms` (an app's long task) from when the
 * evaluate runs; resolves to its `{ start, end }` (Date.now()).
 */
function spin(page, ms) {
  return page.evaluate((ms) => {
    const start = Date.now();
    while (Date.now() < start + ms);
    return { start, end: Date.now() };
  }, ms);
}

for (const withSharedWorker of [true, false]) {
  test.describe(withSharedWorker ? 'with the SharedWorker router' : 'without SharedWorker', () => {
    if (!withSharedWorker) {
      test.beforeEach(async ({ context }) => {
        await context.addInitScript(() => {
          delete globalThis.SharedWorker;
        });
      });
    }

    test('a write in one tab is seen by the other, and the demo list updates live', async ({
      context,
    }) => {
      const [a, b] = await openTabs(context, 2, withSharedWorker);
      const text = `from tab A ${uniqueMarker('tabs')}`;

      await a.getByTestId('new-item').fill(text);
      await a.getByTestId('add-item').click();
      await expect(a.getByTestId('item').filter({ hasText: text })).toHaveCount(1);

      // Tab B re-reads on the change notification, without a reload.
      await expect(b.getByTestId('item').filter({ hasText: text })).toHaveCount(1);
      const seen = await b.evaluate(
        (text) => window.db.query('SELECT count(*) AS n FROM items WHERE text = ?', [text]),
        text,
      );
      expect(seen).toEqual([{ n: 1 }]);
    });

    test("a tab joins, reads and writes while the leader tab's main thread is busy", async ({
      context,
    }) => {
      // The leader's page (L) may be busy with the app's own work (a long
      // render, say): a tab joining must not wait for it, as it is the
      // leader's worker that serves it.
      const [r, l] = await openTabs(context, 2, withSharedWorker);
      await leadInsteadOfFirstTab(r, l);
      const marker = uniqueMarker('busy');
      await l.evaluate(async (marker) => {
        await window.db.exec('CREATE TABLE IF NOT EXISTS e2e_busy (marker TEXT NOT NULL, v TEXT)');
        await window.db.run('INSERT INTO e2e_busy VALUES (?, ?)', [marker, 'before']);
      }, marker);

      const busy = spin(l, 6000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const j = await context.newPage();
      forwardPageErrors(j, 'tab J');
      await openDemo(j);
      const served = await j.evaluate(async (marker) => {
        const rows = await window.db.query('SELECT v FROM e2e_busy WHERE marker = ?', [marker]);
        await window.db.run('INSERT INTO e2e_busy VALUES (?, ?)', [marker, 'from J']);
        return { rows, at: Date.now(), leader: window.db.isLeader };
      }, marker);
      const { start, end } = await busy;

      expect(served.leader).toBe(false);
      expect(served.rows).toEqual([{ v: 'before' }]);
      // J was served (its write acknowledged) while L was still spinning.
      expect(start).toBeLessThan(served.at);
      expect(served.at).toBeLessThan(end);
      // L, free again, reads J's write.
      const seen = await l.evaluate(
        (marker) => window.db.query('SELECT v FROM e2e_busy WHERE marker = ? ORDER BY rowid', [marker]),
        marker,
      );
      expect(seen).toEqual([{ v: 'before' }, { v: 'from J' }]);
    });

    test("a follower closing mid-transaction is rolled back while the leader tab's main thread is busy", async ({
      context,
    }) => {
      // F holds an interactive transaction (every other write waits behind
      // it) when its tab closes. The leader's worker must hear of it and roll
      // it back at once, not when its 30 s lease runs out, even while the
      // leader's page (L) is busy: the router tells the worker directly.
      const [r, l, f, g] = await openTabs(context, 4, withSharedWorker);
      await leadInsteadOfFirstTab(r, l);
      const marker = uniqueMarker('gone');
      await l.evaluate(() =>
        window.db.exec('CREATE TABLE IF NOT EXISTS e2e_gone (marker TEXT NOT NULL, v TEXT)'),
      );
      await f.evaluate((marker) => {
        window.db
          .transaction(async (tx) => {
            await tx.run('INSERT INTO e2e_gone VALUES (?, ?)', [marker, 'from F, never committed']);
            window.inTransaction = true;
            await new Promise(() => {}); // holds the transaction until the tab goes
          })
          .catch(() => {});
      }, marker);
      await f.waitForFunction(() => window.inTransaction === true);
      // G's write queues behind F's transaction.
      await g.evaluate((marker) => {
        window.written = window.db
          .run('INSERT INTO e2e_gone VALUES (?, ?)', [marker, 'from G'])
          .then(() => Date.now());
      }, marker);

      const busy = spin(l, 6000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const closedAt = Date.now();
      await f.close();
      const writtenAt = await g.evaluate(() => window.written);
      const { start, end } = await busy;

      // G's write went through after F left and while L was still spinning.
      expect(start).toBeLessThan(closedAt);
      expect(closedAt).toBeLessThan(writtenAt);
      expect(writtenAt).toBeLessThan(end);
      const rows = await l.evaluate(
        (marker) => window.db.query('SELECT v FROM e2e_gone WHERE marker = ?', [marker]),
        marker,
      );
      expect(rows).toEqual([{ v: 'from G' }]);
    });

    test('exactly one tab leads; when it closes another takes over with the data', async ({
      context,
    }) => {
      const tabs = await openTabs(context, 3, withSharedWorker);
      const flags = await leaderFlags(tabs);
      expect(flags.filter(Boolean)).toHaveLength(1);
      const leader = flags.indexOf(true);
      const followers = tabs.filter((_, i) => i !== leader);

      // A follower writes (through the leader's worker).
      const marker = uniqueMarker('failover');
      await followers[0].evaluate(async (marker) => {
        await window.db.exec(
          'CREATE TABLE IF NOT EXISTS e2e_tabs (id INTEGER PRIMARY KEY, marker TEXT NOT NULL, v TEXT)',
        );
        await window.db.run('INSERT INTO e2e_tabs (marker, v) VALUES (?, ?)', [marker, 'before']);
      }, marker);

      // The leader's tab goes away; one of the others must take over.
      await tabs[leader].close();
      await expect
        .poll(async () => (await leaderFlags(followers)).filter(Boolean).length, { timeout: 20_000 })
        .toBe(1);

      // Both remaining tabs read what was written before and can write again.
      await followers[1].evaluate(
        (marker) => window.db.run('INSERT INTO e2e_tabs (marker, v) VALUES (?, ?)', [marker, 'after']),
        marker,
      );
      for (const tab of followers) {
        const rows = await tab.evaluate(
          (marker) => window.db.query('SELECT v FROM e2e_tabs WHERE marker = ? ORDER BY id', [marker]),
          marker,
        );
        expect(rows).toEqual([{ v: 'before' }, { v: 'after' }]);
      }
    });

    test('a follower that dies inside its transaction loses it; the tab queued behind it goes on', async ({
      context,
    }) => {
      const tabs = await openTabs(context, 3, withSharedWorker);
      const flags = await Promise.all(tabs.map((p) => p.evaluate(() => window.db.isLeader)));
      const [holder, other] = tabs.filter((_, i) => !flags[i]);
      const marker = uniqueMarker('dead-holder');
      await other.evaluate(() =>
        window.db.exec('CREATE TABLE IF NOT EXISTS e2e_holder (marker TEXT NOT NULL, who TEXT)'),
      );
      // The holder inserts inside a transaction and never finishes it.
      await holder.evaluate((marker) => {
        window.__inTx = new Promise((inside) => {
          window.db.transaction(async (tx) => {
            await tx.run("INSERT INTO e2e_holder VALUES (?, 'holder')", [marker]);
            inside();
            await new Promise(() => {});
          });
        });
        return window.__inTx;
      }, marker);
      // Another tab's write waits behind the open transaction...
      const queued = other.evaluate(
        (marker) =>
          window.db
            .run("INSERT INTO e2e_holder VALUES (?, 'other')", [marker])
            .then(() => 'written', (e) => e.code),
        marker,
      );
      await holder.close();
      // ...and goes through once the router reports the holder's death.
      expect(await queued).toBe('written');
      const rows = await other.evaluate(
        (marker) => window.db.query('SELECT who FROM e2e_holder WHERE marker = ?', [marker]),
        marker,
      );
      expect(rows).toEqual([{ who: 'other' }]);
    });

    test('the demo shows role and epoch, and its button hands leadership over', async ({
      context,
    }) => {
      const tabs = await openTabs(context, 2, withSharedWorker);
      const roles = () =>
        Promise.all(tabs.map((p) => p.getByTestId('leader').getAttribute('data-leader')));
      await expect.poll(roles).toEqual(expect.arrayContaining(['true', 'false']));
      const leader = (await roles()).indexOf('true');
      const other = tabs[1 - leader];
      const epochBefore = Number(await other.getByTestId('leader').getAttribute('data-epoch'));
      await expect(other.getByTestId('step-down')).toBeDisabled();

      await tabs[leader].getByTestId('step-down').click();

      // The other tab leads now, in a newer epoch, shown on both pages.
      await expect(other.getByTestId('leader')).toHaveAttribute('data-leader', 'true');
      await expect(tabs[leader].getByTestId('leader')).toHaveAttribute('data-leader', 'false');
      for (const tab of tabs) {
        await expect
          .poll(async () => Number(await tab.getByTestId('leader').getAttribute('data-epoch')))
          .toBeGreaterThan(epochBefore);
      }
      // And the list still works from the tab that gave up.
      const text = uniqueMarker('after-step-down');
      await tabs[leader].getByTestId('new-item').fill(text);
      await tabs[leader].getByTestId('add-item').click();
      await expect(other.getByTestId('item').filter({ hasText: text })).toHaveCount(1);
    });
  });
}
