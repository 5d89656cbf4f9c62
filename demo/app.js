// sqlite-tabs demo: a shared to-do list. Plain JS, no build step.
import { open } from '/dist/index.js';

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const statusEl = $('status');
const leaderEl = $('leader');
const form = $('add-form');
const input = $('new-item');
const addButton = $('add-item');
const errorEl = $('error');
const list = $('items');
const emptyEl = $('empty');
const stepDownButton = $('step-down');

/** Shows `text` in the status line; `state` is "opening", "open" or "error". */
function setStatus(text, state) {
  statusEl.textContent = text;
  statusEl.dataset.state = state;
}

/** Formats an error from the library as "CODE: message". */
function describe(err) {
  const code = err && err.code ? `${err.code}: ` : '';
  return `${code}${err && err.message ? err.message : String(err)}`;
}

/** Shows (or with null, hides) an error of the last action. */
function showError(err) {
  errorEl.hidden = err == null;
  errorEl.textContent = err == null ? '' : describe(err);
}

let db = null;
let generation = 0;

const LIST_SQL = 'SELECT id, text, created_at FROM items ORDER BY id';

/** Renders the list. */
function render(rows) {
  list.replaceChildren(...rows.map(renderItem));
  emptyEl.hidden = rows.length > 0;
}

/** Re-reads the list and renders it; an older read never overwrites a newer one. */
async function refresh() {
  const mine = ++generation;
  const rows = await db.query(LIST_SQL);
  if (mine !== generation) return;
  render(rows);
}

/** One list row: text, time and a delete button. */
function renderItem(row) {
  const li = document.createElement('li');
  li.dataset.testid = 'item';
  li.dataset.id = String(row.id);

  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = row.text;

  const created = new Date(Number(row.created_at));
  const time = document.createElement('time');
  time.dateTime = created.toISOString();
  time.textContent = created.toLocaleTimeString();

  const del = document.createElement('button');
  del.type = 'button';
  del.dataset.testid = 'delete-item';
  del.textContent = 'Delete';
  del.setAttribute('aria-label', `Delete “${row.text}”`);
  del.addEventListener('click', () =>
    act(del, () => db.run('DELETE FROM items WHERE id = ?', [row.id])),
  );

  li.append(text, time, del);
  return li;
}

/** Runs a write with `control` disabled, then re-reads the list; shows any error. */
async function act(control, write) {
  control.disabled = true;
  try {
    await write();
    showError(null);
    await refresh();
  } catch (err) {
    showError(err);
  } finally {
    control.disabled = false;
  }
}

/** Shows whether this tab holds the database (the leader) or talks to another tab. */
function showRole(isLeader) {
  leaderEl.hidden = false;
  leaderEl.dataset.leader = String(isLeader);
  leaderEl.dataset.epoch = String(db.epoch);
  leaderEl.textContent = isLeader
    ? `This tab is the leader (epoch ${db.epoch}): SQLite runs in its worker.`
    : `This tab is a follower (epoch ${db.epoch}): another tab runs SQLite.`;
  stepDownButton.disabled = !isLeader;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  act(addButton, async () => {
    await db.run('INSERT INTO items (text, created_at) VALUES (?, ?)', [text, Date.now()]);
    input.value = '';
  });
});

async function main() {
  try {
    db = await open('demo.db');
    await db.exec(
      'CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at INTEGER NOT NULL)',
    );
  } catch (err) {
    setStatus(`failed to open: ${describe(err)}`, 'error');
    console.error('sqlite-tabs demo: open failed', err);
    return;
  }

  window.db = db;
  setStatus(db.storage ? `open (${db.storage})` : 'open', 'open');

  showRole(db.isLeader);
  db.onLeaderChange(showRole);
  stepDownButton.addEventListener('click', () => act(stepDownButton, () => db.stepDown()));

  // Live list: watch() re-runs the query whenever any tab commits a change
  // to a table it reads, and calls back only when the rows differ.
  db.watch(LIST_SQL, [], (rows) => {
    generation++;
    render(rows);
  });

  input.disabled = false;
  addButton.disabled = false;
  input.focus();
}

main();
