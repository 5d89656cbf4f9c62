// Dedicated worker entry of sqlite-tabs: loads the database engine's wasm and
// starts it; the engine then says Ready and waits for its Open message.
import init, { start } from './sqlite_tabs_db_worker.js';

await init();
start();
