use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use sqlite_tabs_protocol::{
    decode, encode, ChangeEvent, ClientId, Error, ErrorCode, FromWorker, OpenInfo, OpenParams,
    Reply, Request, RequestEnvelope, RequestId, RunResult, Storage, ToWorker, TxId,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::convert::{
    from_value, rows_to_objects, rows_to_raw, to_js_error, to_params, to_sql, to_statements,
};

const DEFAULT_TIMEOUT_MS: u32 = 30_000;
/// Opening may wait up to 10 s for a previous owner to release the files.
const DEFAULT_OPEN_TIMEOUT_MS: u32 = 20_000;
const CLOSE_TIMEOUT_MS: u32 = 2_000;

type Handler = Closure<dyn FnMut(JsValue)>;

struct Subscriber {
    id: u32,
    tables: Option<Vec<String>>,
    callback: Function,
}

/// Shared state of one open database in this tab.
struct Inner {
    worker: Worker,
    client: ClientId,
    next_seq: Cell<u64>,
    pending: RefCell<HashMap<RequestId, oneshot::Sender<Result<Reply, Error>>>>,
    timeout_ms: u32,
    closed: Cell<bool>,
    storage: Cell<Storage>,
    ready: RefCell<Option<oneshot::Sender<()>>>,
    opened: RefCell<Option<oneshot::Sender<Result<OpenInfo, Error>>>>,
    closed_ack: RefCell<Option<oneshot::Sender<()>>>,
    subscribers: RefCell<Vec<Subscriber>>,
    next_subscriber: Cell<u32>,
    last_seq: Cell<u64>,
    // Kept so the worker's handlers live exactly as long as the database.
    handlers: RefCell<Vec<Handler>>,
}

fn random_client_id() -> ClientId {
    // 53 random bits from two draws; uniqueness across tabs only needs to be
    // overwhelmingly likely, and Math.random is available everywhere.
    let hi = (js_sys::Math::random() * f64::from(1u32 << 21)) as u64;
    let lo = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    ClientId((hi << 32) | lo)
}

fn option_f64(options: &JsValue, key: &str) -> Option<f64> {
    Reflect::get(options, &key.into()).ok()?.as_f64()
}

fn option_bool(options: &JsValue, key: &str) -> bool {
    Reflect::get(options, &key.into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn timeout_option(options: &JsValue, key: &str, default: u32) -> Result<u32, Error> {
    match option_f64(options, key) {
        None => Ok(default),
        Some(ms) if ms.is_finite() && ms > 0.0 && ms <= f64::from(i32::MAX) => Ok(ms as u32),
        Some(ms) => Err(Error::bad_request(format!(
            "{key} must be a positive number of milliseconds, got {ms}"
        ))),
    }
}

impl Inner {
    fn post(&self, message: &ToWorker) -> Result<(), Error> {
        let bytes = encode(message);
        let array = Uint8Array::new_with_length(bytes.len() as u32);
        array.copy_from(&bytes);
        let buffer = array.buffer();
        self.worker
            .post_message_with_transfer(&buffer, &Array::of1(&buffer))
            .map_err(|e| {
                Error::new(
                    ErrorCode::WorkerFailed,
                    format!("could not send to the database worker: {e:?}"),
                )
            })
    }

    fn on_message(&self, data: JsValue) {
        let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
            return;
        };
        let message = match decode::<FromWorker>(&Uint8Array::new(buffer).to_vec()) {
            Ok(m) => m,
            Err(e) => {
                web_sys::console::error_1(
                    &format!("sqlite-tabs: undecodable message from the worker: {e}").into(),
                );
                return;
            }
        };
        match message {
            FromWorker::Ready => {
                if let Some(tx) = self.ready.borrow_mut().take() {
                    let _ = tx.send(());
                }
            }
            FromWorker::Opened(result) => {
                if let Some(tx) = self.opened.borrow_mut().take() {
                    let _ = tx.send(result);
                }
            }
            FromWorker::Reply { id, result } => {
                // A missing entry means the caller already timed out.
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.send(result);
                }
            }
            FromWorker::Changed(event) => self.dispatch_change(&event),
            FromWorker::Closed => {
                if let Some(tx) = self.closed_ack.borrow_mut().take() {
                    let _ = tx.send(());
                }
            }
            FromWorker::Rejected(e) => {
                web_sys::console::warn_1(
                    &format!("sqlite-tabs: the worker rejected a message: {e}").into(),
                );
            }
        }
    }

    /// The worker died or could not load: nothing it owed will come.
    fn on_worker_error(&self, message: String) {
        let error = Error::new(
            ErrorCode::WorkerFailed,
            format!("the database worker failed: {message}"),
        );
        self.closed.set(true);
        self.ready.borrow_mut().take();
        if let Some(tx) = self.opened.borrow_mut().take() {
            let _ = tx.send(Err(error.clone()));
        }
        self.fail_pending(&error);
    }

    fn fail_pending(&self, error: &Error) {
        let pending: Vec<_> = self.pending.borrow_mut().drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(error.clone()));
        }
    }

    fn dispatch_change(&self, event: &ChangeEvent) {
        if event.seq <= self.last_seq.get() {
            return;
        }
        self.last_seq.set(event.seq);
        // Callbacks may subscribe or unsubscribe: iterate over a snapshot.
        let targets: Vec<Function> = self
            .subscribers
            .borrow()
            .iter()
            .filter(|s| match &s.tables {
                None => true,
                Some(tables) => tables.iter().any(|t| event.tables.contains(t)),
            })
            .map(|s| s.callback.clone())
            .collect();
        if targets.is_empty() {
            return;
        }
        let ev = Object::new();
        let tables: Array = event.tables.iter().map(|t| JsValue::from_str(t)).collect();
        let _ = Reflect::set(&ev, &"tables".into(), &tables);
        let _ = Reflect::set(&ev, &"seq".into(), &JsValue::from_f64(event.seq as f64));
        for callback in targets {
            if let Err(e) = callback.call1(&JsValue::UNDEFINED, &ev) {
                // One throwing subscriber must not starve the others.
                web_sys::console::error_2(&"sqlite-tabs: subscriber threw".into(), &e);
            }
        }
    }

    /// Sends a request and waits for its answer or its timeout.
    async fn call(self: &Rc<Self>, request: Request) -> Result<Reply, Error> {
        if self.closed.get() {
            return Err(Error::new(ErrorCode::Closed, "the database is closed"));
        }
        let seq = self.next_seq.get() + 1;
        self.next_seq.set(seq);
        let id = RequestId {
            client: self.client,
            seq,
        };
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.post(&ToWorker::Request(RequestEnvelope { id, request })) {
            self.pending.borrow_mut().remove(&id);
            return Err(e);
        }
        match select(rx, TimeoutFuture::new(self.timeout_ms)).await {
            Either::Left((Ok(result), _)) => result,
            Either::Left((Err(_canceled), _)) => {
                Err(Error::new(ErrorCode::Closed, "the database was closed"))
            }
            Either::Right(((), _)) => {
                self.pending.borrow_mut().remove(&id);
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "no answer from the database within {} ms; a write may still be applied",
                        self.timeout_ms
                    ),
                ))
            }
        }
    }

    async fn close(self: &Rc<Self>) {
        if self.closed.replace(true) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        *self.closed_ack.borrow_mut() = Some(tx);
        if self.post(&ToWorker::Close).is_ok() {
            // Waiting lets the worker release its OPFS handles cleanly; the
            // timeout covers a worker that is stuck or gone.
            let _ = select(rx, TimeoutFuture::new(CLOSE_TIMEOUT_MS)).await;
        }
        self.worker.terminate();
        self.fail_pending(&Error::new(
            ErrorCode::Closed,
            "the database was closed before the request completed",
        ));
        self.subscribers.borrow_mut().clear();
        self.handlers.borrow_mut().clear();
    }
}

fn js_result(result: Result<JsValue, Error>) -> Result<JsValue, JsValue> {
    result.map_err(|e| to_js_error(&e))
}

fn run_result(r: &RunResult) -> JsValue {
    let obj = Object::new();
    let _ = Reflect::set(
        &obj,
        &"changes".into(),
        &JsValue::from_f64(r.changes as f64),
    );
    let _ = Reflect::set(
        &obj,
        &"lastInsertRowid".into(),
        &from_value(&sqlite_tabs_protocol::Value::Integer(r.last_insert_rowid)),
    );
    obj.into()
}

fn unexpected(reply: Reply) -> Error {
    Error::internal(format!("unexpected reply {reply:?}"))
}

#[derive(Clone, Copy)]
enum Shape {
    Objects,
    Raw,
}

async fn query(
    inner: Rc<Inner>,
    sql: JsValue,
    params: JsValue,
    tx: Option<TxId>,
    shape: Shape,
) -> Result<JsValue, Error> {
    let request = Request::Query {
        sql: to_sql(&sql)?,
        params: to_params(&params)?,
        tx,
    };
    match inner.call(request).await? {
        Reply::Rows(rows) => Ok(match shape {
            Shape::Objects => rows_to_objects(&rows).into(),
            Shape::Raw => rows_to_raw(&rows).into(),
        }),
        other => Err(unexpected(other)),
    }
}

async fn run(
    inner: Rc<Inner>,
    sql: JsValue,
    params: JsValue,
    tx: Option<TxId>,
) -> Result<JsValue, Error> {
    let request = Request::Run {
        sql: to_sql(&sql)?,
        params: to_params(&params)?,
        tx,
    };
    match inner.call(request).await? {
        Reply::Run(r) => Ok(run_result(&r)),
        other => Err(unexpected(other)),
    }
}

async fn exec(inner: Rc<Inner>, sql: JsValue, tx: Option<TxId>) -> Result<JsValue, Error> {
    let request = Request::Exec {
        sql: to_sql(&sql)?,
        tx,
    };
    match inner.call(request).await? {
        Reply::Done => Ok(JsValue::UNDEFINED),
        other => Err(unexpected(other)),
    }
}

/// Opens a database: spawns the tab's worker from `options.workerUrl`, waits
/// until it has the database open. Called by `open()` in `index.js`.
#[wasm_bindgen(js_name = openDatabase)]
pub async fn open_database(name: JsValue, options: JsValue) -> Result<Database, JsValue> {
    open_inner(name, options)
        .await
        .map(|inner| Database { inner })
        .map_err(|e| to_js_error(&e))
}

async fn open_inner(name: JsValue, options: JsValue) -> Result<Rc<Inner>, Error> {
    let name = name
        .as_string()
        .ok_or_else(|| Error::bad_request("the database name must be a string"))?;
    let options = if options.is_object() {
        options
    } else {
        Object::new().into()
    };
    let worker_url = Reflect::get(&options, &"workerUrl".into())
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| Error::bad_request("options.workerUrl must be the URL of db-worker.js"))?;
    let timeout_ms = timeout_option(&options, "timeoutMs", DEFAULT_TIMEOUT_MS)?;
    let open_timeout_ms = timeout_option(&options, "openTimeoutMs", DEFAULT_OPEN_TIMEOUT_MS)?;
    let memory_fallback = option_bool(&options, "memoryFallback");

    let worker_options = WorkerOptions::new();
    worker_options.set_type(WorkerType::Module);
    worker_options.set_name(&format!("sqlite-tabs {name}"));
    let worker = Worker::new_with_options(&worker_url, &worker_options).map_err(|e| {
        Error::new(
            ErrorCode::WorkerFailed,
            format!("could not start the database worker from {worker_url}: {e:?}"),
        )
    })?;

    let (ready_tx, ready_rx) = oneshot::channel();
    let (opened_tx, opened_rx) = oneshot::channel();
    let inner = Rc::new(Inner {
        worker,
        client: random_client_id(),
        next_seq: Cell::new(0),
        pending: RefCell::new(HashMap::new()),
        timeout_ms,
        closed: Cell::new(false),
        storage: Cell::new(Storage::Opfs),
        ready: RefCell::new(Some(ready_tx)),
        opened: RefCell::new(Some(opened_tx)),
        closed_ack: RefCell::new(None),
        subscribers: RefCell::new(Vec::new()),
        next_subscriber: Cell::new(1),
        last_seq: Cell::new(0),
        handlers: RefCell::new(Vec::new()),
    });

    // Handlers hold a weak reference: the Inner owns them, not the reverse.
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let on_message = Handler::new(move |event: JsValue| {
        if let (Some(inner), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) {
            inner.on_message(event.data());
        }
    });
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let url = worker_url.clone();
    let on_error = Handler::new(move |event: JsValue| {
        if let Some(inner) = weak.upgrade() {
            let detail = event
                .dyn_ref::<ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("it could not be loaded from {url}"));
            inner.on_worker_error(detail);
        }
    });
    inner
        .worker
        .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    inner
        .worker
        .set_onerror(Some(on_error.as_ref().unchecked_ref()));
    inner.handlers.borrow_mut().extend([on_message, on_error]);

    let handshake = async {
        ready_rx.await.map_err(|_| {
            Error::new(ErrorCode::WorkerFailed, "the database worker did not start")
        })?;
        inner.post(&ToWorker::Open(OpenParams {
            name: name.clone(),
            memory_fallback,
        }))?;
        opened_rx.await.map_err(|_| {
            Error::new(
                ErrorCode::WorkerFailed,
                "the database worker stopped while opening",
            )
        })?
    };
    let result = match select(Box::pin(handshake), TimeoutFuture::new(open_timeout_ms)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(Error::new(
            ErrorCode::Timeout,
            format!("opening {name:?} took longer than {open_timeout_ms} ms"),
        )),
    };
    match result {
        Ok(info) => {
            inner.storage.set(info.storage);
            inner.last_seq.set(info.seq);
            Ok(inner)
        }
        Err(e) => {
            inner.closed.set(true);
            inner.worker.terminate();
            inner.handlers.borrow_mut().clear();
            Err(e)
        }
    }
}

/// An open database (wrapped by the `Database` class of `index.js`).
#[wasm_bindgen]
pub struct Database {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Database {
    /// Runs one or more statements without parameters.
    pub fn exec(&self, sql: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { js_result(exec(inner, sql, None).await) })
    }

    /// Runs one statement; resolves to rows as objects keyed by column name.
    pub fn query(&self, sql: JsValue, params: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            js_result(query(inner, sql, params, None, Shape::Objects).await)
        })
    }

    /// Runs one statement; resolves to `{ columns, rows }` with rows as arrays.
    #[wasm_bindgen(js_name = queryRaw)]
    pub fn query_raw(&self, sql: JsValue, params: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(
            async move { js_result(query(inner, sql, params, None, Shape::Raw).await) },
        )
    }

    /// Runs one statement; resolves to `{ changes, lastInsertRowid }`.
    pub fn run(&self, sql: JsValue, params: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { js_result(run(inner, sql, params, None).await) })
    }

    /// Runs several statements atomically; resolves to one run result each.
    pub fn batch(&self, statements: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            js_result(
                async {
                    let statements = to_statements(&statements)?;
                    match inner.call(Request::Batch { statements }).await? {
                        Reply::Batch(results) => {
                            Ok(results.iter().map(run_result).collect::<Array>().into())
                        }
                        other => Err(unexpected(other)),
                    }
                }
                .await,
            )
        })
    }

    /// Runs `fn(tx)` inside a transaction: commits when its promise resolves,
    /// rolls back when it rejects (and rejects with the same reason).
    pub fn transaction(&self, f: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let Some(f) = f.dyn_ref::<Function>().cloned() else {
                return Err(to_js_error(&Error::bad_request(
                    "transaction() takes a function (tx) => Promise",
                )));
            };
            let tx = match inner.call(Request::Begin).await {
                Ok(Reply::Began(tx)) => tx,
                Ok(other) => return Err(to_js_error(&unexpected(other))),
                Err(e) => return Err(to_js_error(&e)),
            };
            let active = Rc::new(Cell::new(true));
            let handle = Transaction {
                inner: inner.clone(),
                tx,
                active: active.clone(),
            };
            let outcome = match f.call1(&JsValue::UNDEFINED, &JsValue::from(handle)) {
                Ok(value) => JsFuture::from(Promise::resolve(&value)).await,
                Err(thrown) => Err(thrown),
            };
            active.set(false);
            match outcome {
                Ok(value) => match inner.call(Request::Commit { tx }).await {
                    Ok(_) => Ok(value),
                    Err(e) => Err(to_js_error(&e)),
                },
                Err(reason) => {
                    // The caller wants to see why its function failed; a
                    // failing rollback (e.g. lease already expired) adds nothing.
                    let _ = inner.call(Request::Rollback { tx }).await;
                    Err(reason)
                }
            }
        })
    }

    /// Registers `callback({ tables, seq })` for commits that touch any of
    /// `tables` (or every commit when `tables` is null); returns an id for
    /// [`Database::unsubscribe`].
    pub fn subscribe(&self, tables: JsValue, callback: JsValue) -> Result<u32, JsValue> {
        let callback = callback.dyn_into::<Function>().map_err(|_| {
            to_js_error(&Error::bad_request("subscribe() needs a callback function"))
        })?;
        let tables = if tables.is_null() || tables.is_undefined() {
            None
        } else if Array::is_array(&tables) {
            Some(
                Array::from(&tables)
                    .iter()
                    .map(|t| {
                        t.as_string().ok_or_else(|| {
                            to_js_error(&Error::bad_request("table names must be strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        } else {
            return Err(to_js_error(&Error::bad_request(
                "subscribe() takes an array of table names or null",
            )));
        };
        let id = self.inner.next_subscriber.get();
        self.inner.next_subscriber.set(id + 1);
        self.inner.subscribers.borrow_mut().push(Subscriber {
            id,
            tables,
            callback,
        });
        Ok(id)
    }

    /// Removes a subscription made by [`Database::subscribe`].
    pub fn unsubscribe(&self, id: u32) {
        self.inner.subscribers.borrow_mut().retain(|s| s.id != id);
    }

    /// Whether this tab owns the database (always true until multi-tab
    /// coordination is enabled).
    #[wasm_bindgen(getter, js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        true
    }

    /// `"opfs"` or `"memory"` (the opt-in fallback).
    #[wasm_bindgen(getter)]
    pub fn storage(&self) -> String {
        match self.inner.storage.get() {
            Storage::Opfs => "opfs".into(),
            Storage::Memory => "memory".into(),
        }
    }

    /// Sequence number of the last commit this tab heard of.
    #[wasm_bindgen(getter, js_name = lastSeq)]
    pub fn last_seq(&self) -> f64 {
        self.inner.last_seq.get() as f64
    }

    /// Closes the database: pending requests reject with `CLOSED`, the worker
    /// releases its files and ends. Safe to call twice.
    pub fn close(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// The handle passed to `transaction(fn)`: the same calls, inside the
/// transaction. Unusable once the transaction ended.
#[wasm_bindgen]
pub struct Transaction {
    inner: Rc<Inner>,
    tx: TxId,
    active: Rc<Cell<bool>>,
}

impl Transaction {
    fn check(&self) -> Result<(), Error> {
        if self.active.get() {
            Ok(())
        } else {
            Err(Error::bad_request(
                "this transaction has ended; use the tx object only inside its transaction() callback",
            ))
        }
    }
}

#[wasm_bindgen]
impl Transaction {
    /// `exec` inside the transaction.
    pub fn exec(&self, sql: JsValue) -> Promise {
        let (inner, tx, check) = (self.inner.clone(), self.tx, self.check());
        future_to_promise(async move {
            check.map_err(|e| to_js_error(&e))?;
            js_result(exec(inner, sql, Some(tx)).await)
        })
    }

    /// `query` inside the transaction.
    pub fn query(&self, sql: JsValue, params: JsValue) -> Promise {
        let (inner, tx, check) = (self.inner.clone(), self.tx, self.check());
        future_to_promise(async move {
            check.map_err(|e| to_js_error(&e))?;
            js_result(query(inner, sql, params, Some(tx), Shape::Objects).await)
        })
    }

    /// `queryRaw` inside the transaction.
    #[wasm_bindgen(js_name = queryRaw)]
    pub fn query_raw(&self, sql: JsValue, params: JsValue) -> Promise {
        let (inner, tx, check) = (self.inner.clone(), self.tx, self.check());
        future_to_promise(async move {
            check.map_err(|e| to_js_error(&e))?;
            js_result(query(inner, sql, params, Some(tx), Shape::Raw).await)
        })
    }

    /// `run` inside the transaction.
    pub fn run(&self, sql: JsValue, params: JsValue) -> Promise {
        let (inner, tx, check) = (self.inner.clone(), self.tx, self.check());
        future_to_promise(async move {
            check.map_err(|e| to_js_error(&e))?;
            js_result(run(inner, sql, params, Some(tx)).await)
        })
    }
}
