// Dedicated worker entry of sqlite-tabs. The database engine's wasm (SQLite,
// most of what the package weighs) loads on the first message: index.js sends
// one (`null`) at once when no tab leads the database, a tab that wins the
// election sends Open, and a follower's tab sends Warm after it has joined.
// So a tab joining a running leader does not load SQLite while it starts.
// Messages that arrive while the wasm loads are kept and handed over; a load
// that fails is rethrown as an uncaught error, which the tab sees as the
// worker's `error` event.
const early = [];
let loading = null;

function load() {
  loading ??= (async () => {
    // The glue is imported dynamically so that the wasm's fetch starts with it.
    const wasm = fetch(new URL('./sqlite_tabs_db_worker_bg.wasm', import.meta.url));
    wasm.catch(() => {}); // a failed fetch is reported by init() below
    const { default: init, start } = await import('./sqlite_tabs_db_worker.js');
    await init({ module_or_path: wasm });
    start(early);
  })().catch((error) =>
    setTimeout(() => {
      throw error;
    }),
  );
}

self.onmessage = (event) => {
  if (event.data !== null) early.push(event);
  load();
};
