// SharedWorker entry of sqlite-tabs: loads the router's wasm and starts it.
import init, { start } from './sqlite_tabs_shared_worker.js';

await init();
start();
