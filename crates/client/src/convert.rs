//! Conversions between JavaScript values and protocol values.

use js_sys::{Array, ArrayBuffer, Float64Array, Object, Reflect, Uint32Array, Uint8Array};
use sqlite_tabs_protocol::{
    Error, Rows, RunResult, Statement, StatementRef, Statements, Value, ValueRef,
};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

// `js/marshal.js` sits next to the glue in the package (not in wasm-bindgen's
// snippets/ folder) so that index.js can fetch it alongside the glue.
#[wasm_bindgen(raw_module = "./marshal.js")]
extern "C" {
    #[wasm_bindgen(js_name = packStatements)]
    fn pack_statements(statements: &JsValue, start: u32, end: u32) -> Object;
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
    match number_ref(n) {
        ValueRef::Integer(i) => Value::Integer(i),
        _ => Value::Real(n),
    }
}

/// [`number`], borrowing nothing.
fn number_ref(n: f64) -> ValueRef<'static> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        ValueRef::Integer(n as i64)
    } else {
        ValueRef::Real(n)
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
    // Checked above: a view, not `Array.from`'s copy.
    params
        .unchecked_ref::<Array>()
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

/// A batch as `marshal.js` packs it: one entry of `sqls` per run of equal
/// SQL (`sql_runs` statements long), `counts` parameters per statement, and
/// the parameters as tags, numbers, one text and the other values.
struct Packed {
    sqls: Vec<String>,
    sql_runs: Vec<u32>,
    counts: Vec<u32>,
    tags: Vec<u8>,
    nums: Vec<f64>,
    text: String,
    lens: Vec<u32>,
    others: Array,
}

/// The number of statements of a `batch()` call's argument.
pub fn batch_len(stmts: &JsValue) -> Result<u32, Error> {
    if !Array::is_array(stmts) {
        return Err(Error::bad_request(
            "batch() takes an array of { sql, params } objects",
        ));
    }
    Ok(stmts.unchecked_ref::<Array>().length())
}

fn pack(stmts: &JsValue, start: u32, end: u32) -> Result<Packed, Error> {
    let packed = pack_statements(stmts, start, end);
    let field = |name: &str| Reflect::get(&packed, &name.into()).unwrap_or(JsValue::UNDEFINED);
    if let Some(bad) = field("bad").as_f64() {
        // A 1-based place (marshal.js); as an integer, the float formatting
        // code stays out of the wasm.
        let bad = bad as u64;
        return Err(Error::bad_request(
            if field("reason").as_string().as_deref() == Some("sql") {
                format!("batch statement {bad} has no sql string")
            } else {
                format!("batch statement {bad}: params must be an array of values")
            },
        ));
    }
    Ok(Packed {
        sqls: field("sqls")
            .unchecked_into::<Array>()
            .iter()
            .map(|s| s.as_string().unwrap_or_default())
            .collect(),
        sql_runs: Uint32Array::from(field("sqlRuns")).to_vec(),
        counts: Uint32Array::from(field("counts")).to_vec(),
        tags: Uint8Array::from(field("tags")).to_vec(),
        nums: Float64Array::from(field("nums")).to_vec(),
        text: field("text").as_string().unwrap_or_default(),
        lens: Uint32Array::from(field("lens")).to_vec(),
        others: field("others").unchecked_into(),
    })
}

/// Statements `start..end` of a `batch()` call's argument (an array of `{
/// sql, params? }`, see [`batch_len`]): read in bulk and encoded from slices
/// of the packed buffers, without a parameter vector or a string per
/// statement. Errors name a statement by its place in the whole array.
pub fn batch_statements(stmts: &JsValue, start: u32, end: u32) -> Result<Statements, Error> {
    let p = pack(stmts, start, end)?;
    let Some(text_ends) = utf16_ends(&p.text, &p.lens) else {
        // The joined text paired a lone high surrogate with the next
        // string's low one; per-statement conversion handles that.
        return to_statements_one_by_one(stmts, start, end).map(Statements::from);
    };
    let malformed = || Error::internal("packed batch is shorter than its counts");
    // Values that are neither numbers nor strings are converted first:
    // the borrowed values below point into them.
    let mut others = Vec::with_capacity(p.others.length() as usize);
    if p.others.length() > 0 {
        let mut tags = p.tags.iter();
        for (i, &count) in p.counts.iter().enumerate() {
            for j in 0..count as usize {
                if *tags.next().ok_or_else(malformed)? == TAG_OTHER {
                    let v = p.others.get(others.len() as u32);
                    others.push(to_value(&v, j).map_err(|mut e| {
                        let n = start as usize + i + 1;
                        e.message = format!("batch statement {n}: {}", e.message);
                        e
                    })?);
                }
            }
        }
    }
    let mut values = Vec::with_capacity(p.tags.len());
    let (mut nums, mut other) = (p.nums.iter(), others.iter());
    let (mut text_at, mut text_ends) = (0, text_ends.into_iter());
    for tag in &p.tags {
        values.push(match *tag {
            TAG_NUMBER => number_ref(nums.next().copied().ok_or_else(malformed)?),
            TAG_TEXT => {
                let end = text_ends.next().ok_or_else(malformed)?;
                let text = &p.text[text_at..end];
                text_at = end;
                ValueRef::Text(text)
            }
            TAG_OTHER => other.next().ok_or_else(malformed)?.into(),
            TAG_NULL => ValueRef::Null,
            _ => return Err(Error::internal("packed batch has an unknown tag")),
        });
    }
    let mut statements = Vec::with_capacity(p.counts.len());
    let mut runs = p.sqls.iter().zip(p.sql_runs.iter().copied());
    let mut run: Option<(&String, u32)> = None;
    let mut at = 0;
    for &count in &p.counts {
        if run.is_none_or(|(_, left)| left == 0) {
            run = runs.next();
        }
        let Some((sql, left)) = run.as_mut() else {
            return Err(Error::internal(
                "packed batch has fewer SQL runs than statements",
            ));
        };
        *left -= 1;
        let end = at + count as usize;
        statements.push(StatementRef {
            sql,
            params: values.get(at..end).ok_or_else(malformed)?,
        });
        at = end;
    }
    Ok(Statements::encode(&statements))
}

/// Byte offsets in `text` where each of its consecutive strings of `lens`
/// UTF-16 code units ends; `None` if a boundary falls inside a character.
fn utf16_ends(text: &str, lens: &[u32]) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(lens.len());
    let mut pos = 0;
    if text.is_ascii() {
        for &len in lens {
            pos += len as usize;
            out.push(pos);
        }
        return (pos == text.len()).then_some(out);
    }
    let mut chars = text.char_indices();
    for &len in lens {
        let mut units = 0;
        while units < len {
            let (i, c) = chars.next()?;
            units += c.len_utf16() as u32;
            pos = i + c.len_utf8();
        }
        if units != len {
            return None;
        }
        out.push(pos);
    }
    Some(out)
}

/// Statements `start..end` of a batch, reading each value across the JS
/// boundary on its own.
fn to_statements_one_by_one(
    stmts: &JsValue,
    start: u32,
    end: u32,
) -> Result<Vec<Statement>, Error> {
    let (sql_key, params_key) = (JsValue::from_str("sql"), JsValue::from_str("params"));
    let stmts = stmts.unchecked_ref::<Array>();
    (start..end)
        .map(|i| (i as usize, stmts.get(i)))
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
