//! Conversions between JavaScript values and protocol values.

use std::sync::Arc;

use js_sys::{Array, ArrayBuffer, Float64Array, Object, Reflect, Uint32Array, Uint8Array};
use sqlite_tabs_protocol::{Error, Rows, RunResult, Statement, Value};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

// `js/marshal.js` sits next to the glue in the package (not in wasm-bindgen's
// snippets/ folder) so that index.js can fetch it alongside the glue.
#[wasm_bindgen(raw_module = "./marshal.js")]
extern "C" {
    #[wasm_bindgen(js_name = packStatements)]
    fn pack_statements(statements: &JsValue) -> Object;
    #[wasm_bindgen(js_name = unpackRows)]
    fn unpack_rows(
        columns: &Array,
        tags: &[u8],
        nums: &[f64],
        text: &str,
        lens: &[u32],
        others: &Array,
        raw: bool,
    ) -> Array;
    #[wasm_bindgen(js_name = unpackRunResults)]
    fn unpack_run_results(pairs: &[f64]) -> Array;
}

/// Tags of the packed form, as in `marshal.js`.
const TAG_NULL: u8 = 0;
const TAG_NUMBER: u8 = 1;
const TAG_TEXT: u8 = 2;
const TAG_OTHER: u8 = 4;

/// Property names used for every result; made into JS strings once rather
/// than once per object.
struct Keys {
    changes: JsValue,
    last_insert_rowid: JsValue,
    columns: JsValue,
    rows: JsValue,
}

thread_local! {
    static KEYS: Keys = Keys {
        changes: JsValue::from_str("changes"),
        last_insert_rowid: JsValue::from_str("lastInsertRowid"),
        columns: JsValue::from_str("columns"),
        rows: JsValue::from_str("rows"),
    };
}

/// Largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JS number as SQLite gets it: integral values as INTEGER.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        Value::Integer(n as i64)
    } else {
        Value::Real(n)
    }
}

/// Converts one bound parameter; `index` is for the error message.
pub fn to_value(v: &JsValue, index: usize) -> Result<Value, Error> {
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(n) = v.as_f64() {
        return Ok(number(n));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Integer(i64::from(b)));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Text(s));
    }
    if v.is_bigint() {
        return i64::try_from(v.clone()).map(Value::Integer).map_err(|_| {
            Error::bad_request(format!(
                "parameter {} is a bigint outside SQLite's 64-bit integer range",
                index + 1
            ))
        });
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Blob(bytes.to_vec()));
    }
    if let Some(buffer) = v.dyn_ref::<ArrayBuffer>() {
        return Ok(Value::Blob(Uint8Array::new(buffer).to_vec()));
    }
    let kind = v.js_typeof().as_string().unwrap_or_default();
    let kind = if Array::is_array(v) {
        "array".to_owned()
    } else if kind == "object" {
        Object::get_prototype_of(v)
            .constructor()
            .name()
            .as_string()
            .filter(|n| !n.is_empty())
            .unwrap_or(kind)
    } else {
        kind
    };
    Err(Error::bad_request(format!(
        "parameter {} has unsupported type {kind}; use null, number, bigint, string, boolean or Uint8Array",
        index + 1
    )))
}

/// Converts the optional params array of a call.
pub fn to_params(params: &JsValue) -> Result<Vec<Value>, Error> {
    if params.is_undefined() || params.is_null() {
        return Ok(Vec::new());
    }
    if !Array::is_array(params) {
        return Err(Error::bad_request("params must be an array of values"));
    }
    Array::from(params)
        .iter()
        .enumerate()
        .map(|(i, v)| to_value(&v, i))
        .collect()
}

/// Reads a SQL string argument.
pub fn to_sql(sql: &JsValue) -> Result<String, Error> {
    sql.as_string()
        .ok_or_else(|| Error::bad_request("sql must be a string"))
}

/// Reads the statements of a `batch()` call: `[{ sql, params? }, ...]`.
pub fn to_statements(stmts: &JsValue) -> Result<Vec<Statement>, Error> {
    if !Array::is_array(stmts) {
        return Err(Error::bad_request(
            "batch() takes an array of { sql, params } objects",
        ));
    }
    let packed = pack_statements(stmts);
    let field = |name: &str| Reflect::get(&packed, &name.into()).unwrap_or(JsValue::UNDEFINED);
    if let Some(bad) = field("bad").as_f64() {
        return Err(Error::bad_request(
            if field("reason").as_string().as_deref() == Some("sql") {
                format!("batch statement {bad} has no sql string")
            } else {
                format!("batch statement {bad}: params must be an array of values")
            },
        ));
    }
    let sqls: Vec<Arc<str>> = Array::from(&field("sqls"))
        .iter()
        .map(|s| Arc::from(s.as_string().unwrap_or_default()))
        .collect();
    let sql_runs = Uint32Array::from(field("sqlRuns")).to_vec();
    let counts = Uint32Array::from(field("counts")).to_vec();
    let tags = Uint8Array::from(field("tags")).to_vec();
    let nums = Float64Array::from(field("nums")).to_vec();
    let lens = Uint32Array::from(field("lens")).to_vec();
    let others = Array::from(&field("others"));
    let text = field("text").as_string().unwrap_or_default();
    let Some(texts) = split_utf16(&text, &lens) else {
        // The joined text paired a lone high surrogate with the next
        // string's low one; per-statement conversion handles that.
        return to_statements_one_by_one(stmts);
    };

    let mut sql_runs = sqls.into_iter().zip(sql_runs);
    let mut run: Option<(Arc<str>, u32)> = None;
    let (mut tag, mut num, mut other) = (tags.into_iter(), nums.into_iter(), 0u32);
    let mut texts = texts.into_iter();
    let mut out = Vec::with_capacity(counts.len());
    for (i, &count) in counts.iter().enumerate() {
        if run.as_ref().is_none_or(|(_, left)| *left == 0) {
            run = sql_runs.next();
        }
        let Some((sql, left)) = run.as_mut() else {
            return Err(Error::internal(
                "packed batch has fewer SQL runs than statements",
            ));
        };
        *left -= 1;
        let mut params = Vec::with_capacity(count as usize);
        for j in 0..count as usize {
            let value = match tag.next() {
                Some(TAG_NULL) => Value::Null,
                Some(TAG_NUMBER) => number(num.next().unwrap_or_default()),
                Some(TAG_TEXT) => Value::Text(texts.next().unwrap_or_default()),
                Some(TAG_OTHER) => {
                    let v = others.get(other);
                    other += 1;
                    to_value(&v, j).map_err(|mut e| {
                        e.message = format!("batch statement {}: {}", i + 1, e.message);
                        e
                    })?
                }
                _ => return Err(Error::internal("packed batch is shorter than its counts")),
            };
            params.push(value);
        }
        out.push(Statement {
            sql: sql.clone(),
            params,
        });
    }
    Ok(out)
}

/// Splits `text` into consecutive strings of `lens` UTF-16 code units each;
/// `None` if a boundary falls inside a character.
fn split_utf16(text: &str, lens: &[u32]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(lens.len());
    if text.is_ascii() {
        let mut pos = 0;
        for &len in lens {
            let end = pos + len as usize;
            out.push(text.get(pos..end)?.to_owned());
            pos = end;
        }
        return (pos == text.len()).then_some(out);
    }
    let mut chars = text.char_indices();
    let mut pos = 0;
    for &len in lens {
        let start = pos;
        let mut units = 0;
        while units < len {
            let (i, c) = chars.next()?;
            units += c.len_utf16() as u32;
            pos = i + c.len_utf8();
        }
        if units != len {
            return None;
        }
        out.push(text[start..pos].to_owned());
    }
    Some(out)
}

/// [`to_statements`] reading each value across the JS boundary on its own.
fn to_statements_one_by_one(stmts: &JsValue) -> Result<Vec<Statement>, Error> {
    let (sql_key, params_key) = (JsValue::from_str("sql"), JsValue::from_str("params"));
    Array::from(stmts)
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = |key: &JsValue| Reflect::get(&s, key).unwrap_or(JsValue::UNDEFINED);
            let sql = field(&sql_key).as_string().ok_or_else(|| {
                Error::bad_request(format!("batch statement {} has no sql string", i + 1))
            })?;
            let params = to_params(&field(&params_key)).map_err(|mut e| {
                e.message = format!("batch statement {}: {}", i + 1, e.message);
                e
            })?;
            Ok(Statement {
                sql: sql.into(),
                params,
            })
        })
        .collect()
}

/// Converts one SQL value for JavaScript.
pub fn from_value(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        Value::Integer(i) if (*i as f64).abs() <= MAX_SAFE_INTEGER => JsValue::from_f64(*i as f64),
        Value::Integer(i) => JsValue::from(*i),
        Value::Real(f) => JsValue::from_f64(*f),
        Value::Text(s) => JsValue::from_str(s),
        Value::Blob(b) => Uint8Array::from(b.as_slice()).into(),
    }
}

/// Rows as objects keyed by column name (a later duplicate name wins).
pub fn rows_to_objects(rows: &Rows) -> Array {
    rows_to_js(rows, &column_names(rows), false)
}

/// Rows as `{ columns, rows }` with each row an array.
pub fn rows_to_raw(rows: &Rows) -> Object {
    let obj = Object::new();
    let columns = column_names(rows);
    KEYS.with(|k| {
        let _ = Reflect::set(&obj, &k.rows, &rows_to_js(rows, &columns, true));
        let _ = Reflect::set(&obj, &k.columns, &columns);
    });
    obj
}

fn column_names(rows: &Rows) -> Array {
    rows.columns.iter().map(|c| JsValue::from_str(c)).collect()
}

/// Packs the values for `marshal.js`, which builds the rows.
fn rows_to_js(rows: &Rows, columns: &Array, raw: bool) -> Array {
    let mut tags = Vec::with_capacity(rows.values.len());
    let mut nums = Vec::new();
    let mut text = String::new();
    let mut lens = Vec::new();
    let others = Array::new();
    for v in &rows.values {
        tags.push(match v {
            Value::Null => TAG_NULL,
            Value::Integer(i) if (*i as f64).abs() <= MAX_SAFE_INTEGER => {
                nums.push(*i as f64);
                TAG_NUMBER
            }
            Value::Real(f) => {
                nums.push(*f);
                TAG_NUMBER
            }
            Value::Text(s) => {
                text.push_str(s);
                lens.push(if s.is_ascii() {
                    s.len()
                } else {
                    s.encode_utf16().count()
                } as u32);
                TAG_TEXT
            }
            Value::Integer(_) | Value::Blob(_) => {
                others.push(&from_value(v));
                TAG_OTHER
            }
        });
    }
    unpack_rows(columns, &tags, &nums, &text, &lens, &others, raw)
}

/// `{ changes, lastInsertRowid }` of a `run()`.
pub fn run_result(r: &RunResult) -> JsValue {
    let obj = Object::new();
    KEYS.with(|k| {
        let _ = Reflect::set(&obj, &k.changes, &JsValue::from_f64(r.changes as f64));
        let _ = Reflect::set(
            &obj,
            &k.last_insert_rowid,
            &from_value(&Value::Integer(r.last_insert_rowid)),
        );
    });
    obj.into()
}

/// One `{ changes, lastInsertRowid }` per statement of a `batch()`.
pub fn run_results(results: &[RunResult]) -> Array {
    let safe = |n: f64| n.abs() <= MAX_SAFE_INTEGER;
    let mut pairs = Vec::with_capacity(results.len() * 2);
    for r in results {
        let (changes, rowid) = (r.changes as f64, r.last_insert_rowid as f64);
        if !safe(changes) || !safe(rowid) {
            // A rowid beyond 2^53 must come back as a bigint.
            return results.iter().map(run_result).collect();
        }
        pairs.push(changes);
        pairs.push(rowid);
    }
    unpack_run_results(&pairs)
}

/// Builds the `Error` a promise rejects with: `name` is `SqliteTabsError`,
/// `code` the error code name.
pub fn to_js_error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("SqliteTabsError");
    let _ = Reflect::set(&err, &"code".into(), &JsValue::from_str(&e.code.name()));
    err.into()
}
