// Bulk conversions between JS values and the packed form the wasm client
// reads and writes. Crossing the JS<->wasm boundary once per value (and
// decoding one string per text) was most of the cost of a large batch() or
// query; here the per-value work runs as plain JIT-compiled JS and the
// boundary is crossed a handful of times per call.
//
// Tags (shared with convert.rs): 0 null, 1 number (booleans as 0 / 1),
// 2 string, 4 anything else (bigint, Uint8Array, ArrayBuffer, or a bad value), which
// travels as itself in `others` so Rust can convert it or name its type.

/**
 * Packs `statements[start..end]` of `[{ sql, params? }, ...]`. Returns
 * `{ bad, reason }` for the first malformed statement (its 1-based place in
 * the whole array), else the packed columns. `sqls` holds one entry per run
 * of the same SQL string (`sqlRuns[i]` statements long).
 */
export function packStatements(statements, start, end) {
  const n = end - start;
  const sqls = [];
  const sqlRuns = [];
  const counts = new Uint32Array(n);
  let tags = new Uint8Array(Math.max(16, n * 2));
  let nums = new Float64Array(Math.max(16, n * 2));
  let nTags = 0;
  let nNums = 0;
  const texts = [];
  const others = [];
  let prev;
  for (let i = 0; i < n; i++) {
    const s = statements[start + i];
    const sql = s == null ? undefined : s.sql;
    if (typeof sql !== 'string') return { bad: start + i + 1, reason: 'sql' };
    if (sql === prev) {
      sqlRuns[sqlRuns.length - 1]++;
    } else {
      sqls.push(sql);
      sqlRuns.push(1);
      prev = sql;
    }
    const params = s.params;
    if (params == null) continue;
    if (!Array.isArray(params)) return { bad: start + i + 1, reason: 'params' };
    const m = params.length;
    counts[i] = m;
    if (nTags + m > tags.length) {
      const grown = new Uint8Array(Math.max(tags.length * 2, nTags + m));
      grown.set(tags);
      tags = grown;
    }
    for (let j = 0; j < m; j++) {
      const v = params[j];
      switch (typeof v) {
        case 'boolean':
        case 'number':
          if (nNums === nums.length) {
            const grown = new Float64Array(nums.length * 2);
            grown.set(nums);
            nums = grown;
          }
          // Booleans bind as the integers 0 and 1.
          nums[nNums++] = +v;
          tags[nTags++] = 1;
          break;
        case 'string':
          texts.push(v);
          tags[nTags++] = 2;
          break;
        default:
          if (v === null || v === undefined) {
            tags[nTags++] = 0;
          } else {
            others.push(v);
            tags[nTags++] = 4;
          }
      }
    }
  }
  const lens = new Uint32Array(texts.length);
  for (let k = 0; k < texts.length; k++) lens[k] = texts[k].length;
  return {
    sqls,
    sqlRuns: Uint32Array.from(sqlRuns),
    counts,
    tags: tags.subarray(0, nTags),
    nums: nums.subarray(0, nNums),
    text: texts.join(''),
    lens,
    others,
  };
}

/**
 * Builds rows from packed values: objects keyed by `columns` (a later
 * duplicate name wins) or, with `raw`, arrays in column order.
 */
export function unpackRows(columns, tags, nums, text, lens, others, raw) {
  const width = columns.length;
  const count = width === 0 ? 0 : tags.length / width;
  const rows = new Array(count);
  let ni = 0;
  let ti = 0;
  let pos = 0;
  let oi = 0;
  const next = (tag) => {
    switch (tag) {
      case 1:
        return nums[ni++];
      case 2: {
        const end = pos + lens[ti++];
        const s = text.slice(pos, end);
        pos = end;
        return s;
      }
      case 4:
        return others[oi++];
      default:
        return null;
    }
  };
  let k = 0;
  for (let r = 0; r < count; r++) {
    if (raw) {
      const row = new Array(width);
      for (let c = 0; c < width; c++) row[c] = next(tags[k++]);
      rows[r] = row;
    } else {
      const row = {};
      for (let c = 0; c < width; c++) row[columns[c]] = next(tags[k++]);
      rows[r] = row;
    }
  }
  return rows;
}

/** `{ changes, lastInsertRowid }` objects from pairs of numbers. */
export function unpackRunResults(pairs) {
  const n = pairs.length >> 1;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = { changes: pairs[2 * i], lastInsertRowid: pairs[2 * i + 1] };
  }
  return out;
}
