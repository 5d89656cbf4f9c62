// SharedWorker entry of sqlite-tabs: loads the router's wasm and starts it.
// Tabs that connect while the wasm loads are kept and handed over, so no
// connection is lost.
import init, { start } from './sqlite_tabs_shared_worker.js';

const early = [];
self.onconnect = (event) => early.push(event);
await init({ module_or_path: new URL('./sqlite_tabs_shared_worker_bg.wasm', import.meta.url) });
start(early);
