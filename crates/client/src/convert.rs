//! Conversions between JavaScript values and protocol values.

use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use sqlite_tabs_protocol::{Error, Rows, Statement, Value};
use wasm_bindgen::{JsCast, JsValue};

/// Largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Converts one bound parameter; `index` is for the error message.
pub fn to_value(v: &JsValue, index: usize) -> Result<Value, Error> {
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(n) = v.as_f64() {
        return Ok(if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
            Value::Integer(n as i64)
        } else {
            Value::Real(n)
        });
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
    Array::from(stmts)
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = |name: &str| Reflect::get(&s, &name.into()).unwrap_or(JsValue::UNDEFINED);
            let sql = field("sql").as_string().ok_or_else(|| {
                Error::bad_request(format!("batch statement {} has no sql string", i + 1))
            })?;
            let params = to_params(&field("params")).map_err(|mut e| {
                e.message = format!("batch statement {}: {}", i + 1, e.message);
                e
            })?;
            Ok(Statement { sql, params })
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
    let names: Vec<JsValue> = rows.columns.iter().map(|c| JsValue::from_str(c)).collect();
    let out = Array::new_with_length(rows.row_count() as u32);
    for (r, row) in rows.rows().enumerate() {
        let obj = Object::new();
        for (name, v) in names.iter().zip(row) {
            // Setting a property on a fresh plain object cannot throw.
            let _ = Reflect::set(&obj, name, &from_value(v));
        }
        out.set(r as u32, obj.into());
    }
    out
}

/// Rows as `{ columns, rows }` with each row an array.
pub fn rows_to_raw(rows: &Rows) -> Object {
    let columns: Array = rows.columns.iter().map(|c| JsValue::from_str(c)).collect();
    let out_rows = Array::new_with_length(rows.row_count() as u32);
    for (r, row) in rows.rows().enumerate() {
        let arr: Array = row.iter().map(from_value).collect();
        out_rows.set(r as u32, arr.into());
    }
    let obj = Object::new();
    let _ = Reflect::set(&obj, &"columns".into(), &columns);
    let _ = Reflect::set(&obj, &"rows".into(), &out_rows);
    obj
}

/// Builds the `Error` a promise rejects with: `name` is `SqliteTabsError`,
/// `code` the error code name.
pub fn to_js_error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("SqliteTabsError");
    let _ = Reflect::set(&err, &"code".into(), &JsValue::from_str(&e.code.name()));
    err.into()
}
