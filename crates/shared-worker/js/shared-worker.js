// SharedWorker entry of sqlite-tabs: loads the router's wasm and starts it.
// Tabs that connect while the wasm loads are kept and handed over, so no
// connection is lost. The glue is imported dynamically so that the wasm's
// fetch starts with it, not after it.
const early = [];
self.onconnect = (event) => early.push(event);
const wasm = fetch(new URL('./sqlite_tabs_shared_worker_bg.wasm', import.meta.url));
wasm.catch(() => {}); // a failed fetch is reported by init() below
const { default: init, start } = await import('./sqlite_tabs_shared_worker.js');
await init({ module_or_path: wasm });
start(early);
