//! The wasm glue of the database worker: owns the OPFS pool and the
//! connection, turns messages into scheduler calls and scheduler output into
//! messages. Everything that decides anything lives in the plain-Rust
//! modules.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use js_sys::{Array, ArrayBuffer, Uint8Array};
use rusqlite::{Connection, OpenFlags};
use sqlite_tabs_protocol::{
    decode, encode, names, peek_request_id, Answer, ClientId, Epoch, Error, ErrorCode, FromRouter,
    FromWorker, OpenInfo, OpenParams, RequestEnvelope, Storage, ToWorker,
};
use sqlite_wasm_vfs::sahpool::{self, OpfsSAHError, OpfsSAHPoolCfgBuilder, OpfsSAHPoolUtil};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    BroadcastChannel, DedicatedWorkerGlobalScope, MessageChannel, MessageEvent, MessagePort,
};

use crate::coalesce;
use crate::engine::{sql_error, Engine, EngineOptions};
use crate::retry::Backoff;
use crate::scheduler::{GroupWait, Output, Scheduler, DEFAULT_LEASE_MS};

/// An open database: the engine plus the pool that holds its files.
pub struct OpenDatabase {
    /// The engine on the open connection.
    pub engine: Engine,
    /// Where the data lives.
    pub storage: Storage,
    /// The OPFS pool, `None` for in-memory databases.
    pub pool: Option<OpfsSAHPoolUtil>,
}

impl OpenDatabase {
    /// Closes the connection and releases the OPFS access handles so that
    /// another worker (the next leader) can open the pool.
    pub fn close(self) -> Result<(), Error> {
        drop(self.engine);
        if let Some(pool) = self.pool {
            pool.pause()
                .map_err(|e| Error::internal(format!("releasing the OPFS pool: {e}")))?;
        }
        Ok(())
    }
}

/// Checks a database name: it becomes a directory and a file name in OPFS.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "invalid database name {name:?}: use 1-100 characters from A-Z a-z 0-9 . _ - not starting with '.'"
        )))
    }
}

fn is_held_elsewhere(e: &OpfsSAHError) -> bool {
    e.to_string().contains("NoModificationAllowedError")
}

async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        // If scheduling fails the promise never resolves; it cannot fail for
        // a function and a finite delay.
        let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

async fn install_pool(name: &str) -> Result<OpfsSAHPoolUtil, OpfsSAHError> {
    let cfg = OpfsSAHPoolCfgBuilder::new()
        .vfs_name(&format!("sqlite-tabs-{name}"))
        .directory(&format!(".sqlite-tabs/{name}"))
        .build();
    let mut backoff = Backoff::for_pool_open();
    loop {
        match sahpool::install::<sqlite_wasm_rs::WasmOsCallback>(&cfg, false).await {
            Ok(pool) => {
                if pool.is_paused() {
                    // Reopening in the same worker after close().
                    match pool.resume().await {
                        Ok(()) => return Ok(pool),
                        Err(e) if is_held_elsewhere(&e) => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    return Ok(pool);
                }
            }
            Err(e) if is_held_elsewhere(&e) => {}
            Err(e) => return Err(e),
        }
        match backoff.next() {
            Some(delay) => sleep_ms(delay).await,
            None => {
                return Err(OpfsSAHError::Opfs {
                    operation: "open the database pool",
                    message: format!(
                        "NoModificationAllowedError: another worker still holds the database files after {} ms",
                        backoff.spent_ms()
                    ),
                    value: JsValue::UNDEFINED,
                })
            }
        }
    }
}

/// Opens a database on OPFS (or in memory, if allowed and OPFS is missing).
pub async fn open_database(
    params: &OpenParams,
    options: &EngineOptions,
) -> Result<OpenDatabase, Error> {
    validate_name(&params.name)?;
    match install_pool(&params.name).await {
        Ok(pool) => {
            // The pool's VFS, with writes combined (see `coalesce`).
            let vfs = format!("sqlite-tabs-{}", params.name);
            let combined = format!("{vfs}+wc");
            coalesce::register(Some(&vfs), &combined).map_err(|rc| {
                Error::internal(format!("registering the write-combining VFS failed ({rc})"))
            })?;
            let conn = Connection::open_with_flags_and_vfs(
                format!("/{}", params.name),
                OpenFlags::default(),
                combined.as_str(),
            )
            .map_err(sql_error)?;
            Ok(OpenDatabase {
                engine: Engine::new(conn, options)?,
                storage: Storage::Opfs,
                pool: Some(pool),
            })
        }
        Err(e) if params.memory_fallback && !is_held_elsewhere(&e) => {
            web_sys::console::warn_1(
                &format!(
                    "sqlite-tabs: OPFS is unavailable ({e}); database {:?} lives in memory and will be lost when the page closes",
                    params.name
                )
                .into(),
            );
            let conn = Connection::open_in_memory().map_err(sql_error)?;
            Ok(OpenDatabase {
                engine: Engine::new(conn, options)?,
                storage: Storage::Memory,
                pool: None,
            })
        }
        Err(e) if is_held_elsewhere(&e) => Err(Error::new(
            ErrorCode::OpfsUnavailable,
            format!("the database is in use by another worker: {e}"),
        )),
        Err(e) => Err(Error::new(
            ErrorCode::OpfsUnavailable,
            format!(
                "the Origin Private File System cannot be used here ({e}); private browsing modes often disable it. Pass {{ memoryFallback: true }} to open an in-memory database instead"
            ),
        )),
    }
}

enum State {
    Idle,
    Opening(Vec<RequestEnvelope>),
    Open {
        // Boxed: the scheduler is large and State is swapped around by value.
        scheduler: Box<Scheduler>,
        storage: Storage,
        pool: Option<OpfsSAHPoolUtil>,
        changes: Option<BroadcastChannel>,
    },
}

type PortHandler = Closure<dyn FnMut(MessageEvent)>;

/// A client's port (brokered by the router) and the handler reading it.
struct Attached {
    port: MessagePort,
    _handler: PortHandler,
}

/// Serving tabs without a SharedWorker (e.g. Chrome for Android): requests
/// arrive on one BroadcastChannel, answers leave on another.
struct Fallback {
    name: String,
    epoch: Epoch,
    requests: BroadcastChannel,
    replies: BroadcastChannel,
    clients: RefCell<HashSet<ClientId>>,
    _handler: PortHandler,
}

impl Drop for Fallback {
    fn drop(&mut self) {
        self.requests.close();
        self.replies.close();
    }
}

struct Worker {
    scope: DedicatedWorkerGlobalScope,
    state: RefCell<State>,
    inbox: RefCell<Vec<RequestEnvelope>>,
    drain_scheduled: Cell<bool>,
    group_wait: RefCell<GroupWait>,
    /// Posting on port2 runs `drain` after the messages already queued.
    kick: MessageChannel,
    _on_kick: RefCell<Option<Closure<dyn FnMut()>>>,
    ports: RefCell<HashMap<ClientId, Attached>>,
    /// The router's link to this worker ([`ToWorker::RouterLink`]): tabs are
    /// attached and let go through it. Kept after stepping down, as the
    /// router keeps sending to the last leader until the next one is ready:
    /// a tab attached meanwhile is answered (not the leader) as before.
    router_link: RefCell<Option<(MessagePort, PortHandler)>>,
    /// The client of this worker's own tab once it sends requests on the
    /// worker's own channel (when this worker leads): answered there too.
    local: Cell<Option<ClientId>>,
    /// [`ToWorker::Warm`] ran (or was refused because the worker leads).
    warmed: Cell<bool>,
    fallback: RefCell<Option<Fallback>>,
    timer: RefCell<Option<i32>>,
    on_timer: RefCell<Option<Closure<dyn FnMut()>>>,
}

type MessageHandler = Closure<dyn FnMut(MessageEvent)>;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, callback)`.
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request)]
    fn request_lock(name: &str, callback: &js_sys::Function) -> js_sys::Promise;
}

thread_local! {
    static HANDLER: RefCell<Option<MessageHandler>> = const { RefCell::new(None) };
}

fn now() -> f64 {
    js_sys::Date::now()
}

impl Worker {
    fn post(&self, message: &FromWorker) {
        let buffer = to_buffer(message);
        let posted = match transfer_list(&buffer) {
            Some(transfer) => self.scope.post_message_with_transfer(&buffer, &transfer),
            None => self.scope.post_message(&buffer),
        };
        if let Err(e) = posted {
            web_sys::console::error_2(&"sqlite-tabs worker: postMessage failed".into(), &e);
        }
    }

    /// Sends to `client` through its brokered port, or through the worker's
    /// own port when it has none (its own tab before the router connects).
    fn post_to(&self, client: ClientId, message: &FromWorker) {
        if self.local.get() == Some(client) {
            self.post(message);
            return;
        }
        if let Some(attached) = self.ports.borrow().get(&client) {
            let buffer = to_buffer(message);
            let posted = match transfer_list(&buffer) {
                Some(transfer) => attached
                    .port
                    .post_message_with_transferable(&buffer, &transfer),
                None => attached.port.post_message(&buffer),
            };
            if let Err(e) = posted {
                web_sys::console::error_2(
                    &"sqlite-tabs worker: port postMessage failed".into(),
                    &e,
                );
            }
            return;
        }
        if let Some(fallback) = &*self.fallback.borrow() {
            if fallback.clients.borrow().contains(&client) {
                let bytes = Uint8Array::from(encode(message).as_slice());
                if let Err(e) = fallback.replies.post_message(&bytes.buffer()) {
                    web_sys::console::error_2(
                        &"sqlite-tabs worker: reply broadcast failed".into(),
                        &e,
                    );
                }
                return;
            }
        }
        self.post(message);
    }

    /// A handler for a port or channel of this worker: `on_message` gets the
    /// worker (while it lives), the protocol bytes of each message (others
    /// are ignored) and the event.
    fn handler(
        self: &Rc<Self>,
        on_message: impl Fn(&Rc<Worker>, Vec<u8>, &MessageEvent) + 'static,
    ) -> PortHandler {
        let weak: Weak<Worker> = Rc::downgrade(self);
        PortHandler::new(move |event: MessageEvent| {
            let Some(worker) = weak.upgrade() else { return };
            if let Some(bytes) = message_bytes(&event.data()) {
                on_message(&worker, bytes, &event);
            }
        })
    }

    /// Listens for requests of tabs that have no router.
    fn serve_fallback(self: &Rc<Self>, name: &str, epoch: Epoch) {
        let (Ok(requests), Ok(replies)) = (
            BroadcastChannel::new(&names::requests_channel(name)),
            BroadcastChannel::new(&names::replies_channel(name)),
        ) else {
            return;
        };
        let handler = self.handler(|worker, bytes, _| {
            let Ok(ToWorker::Request(envelope)) = decode::<ToWorker>(&bytes) else {
                return;
            };
            let client = envelope.id.client;
            let first = match &*worker.fallback.borrow() {
                Some(f) => f
                    .clients
                    .borrow_mut()
                    .insert(client)
                    .then(|| (f.epoch, f.name.clone())),
                None => return,
            };
            if let Some((epoch, name)) = first {
                // A tab heard from for the first time learns who leads before
                // its first answer...
                worker.announce(epoch);
                // ...and is watched through its tab lock, as the router would,
                // so its transaction dies with it.
                let weak = Rc::downgrade(worker);
                let on_death = Closure::once_into_js(move |_lock: JsValue| {
                    if let Some(worker) = weak.upgrade() {
                        worker.gone(client);
                    }
                });
                let _ = request_lock(&names::tab_lock(&name, client), on_death.unchecked_ref());
            }
            worker.request(envelope);
        });
        requests.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        *self.fallback.borrow_mut() = Some(Fallback {
            name: name.to_owned(),
            epoch,
            requests,
            replies,
            clients: RefCell::new(HashSet::new()),
            _handler: handler,
        });
        self.announce(epoch);
    }

    fn announce(&self, epoch: Epoch) {
        if let Some(f) = &*self.fallback.borrow() {
            let bytes = Uint8Array::from(encode(&FromWorker::Leader { epoch }).as_slice());
            let _ = f.replies.post_message(&bytes.buffer());
        }
    }

    fn send(&self, out: Output) {
        // Nobody hears of a write while its bytes are still in the write-
        // combining layer (possible only below synchronous=FULL: a FULL
        // commit syncs, which writes them).
        if let Err(rc) = coalesce::flush_all() {
            web_sys::console::error_1(
                &format!("sqlite-tabs worker: writing to the database failed (SQLite code {rc})")
                    .into(),
            );
        }
        if let State::Open {
            changes: Some(channel),
            ..
        } = &*self.state.borrow()
        {
            // One broadcast per group of commits: each postMessage costs
            // far more than its bytes (structured clone copies them to
            // every tab).
            let message = match out.changes.as_slice() {
                [] => None,
                [change] => Some(FromWorker::Changed(change.clone())),
                changes => Some(FromWorker::ChangedAll(changes.to_vec())),
            };
            if let Some(message) = message {
                let bytes = Uint8Array::from(encode(&message).as_slice());
                if let Err(e) = channel.post_message(&bytes.buffer()) {
                    web_sys::console::error_2(&"sqlite-tabs worker: broadcast failed".into(), &e);
                }
            }
        }
        // Likewise one message per client for the answers of a group.
        let mut by_client: Vec<(ClientId, Vec<Answer>)> = Vec::new();
        for (id, result, change) in out.replies {
            let answer = Answer { id, result, change };
            match by_client.iter_mut().find(|(c, _)| *c == id.client) {
                Some((_, answers)) => answers.push(answer),
                None => by_client.push((id.client, vec![answer])),
            }
        }
        for (client, mut answers) in by_client {
            let message = if answers.len() == 1 {
                let Answer { id, result, change } = answers.remove(0);
                FromWorker::Reply { id, result, change }
            } else {
                FromWorker::Replies(answers)
            };
            self.post_to(client, &message);
        }
    }

    /// Arms the single timer for the scheduler's next deadline.
    fn rearm(&self, deadline: Option<f64>) {
        if let Some(id) = self.timer.borrow_mut().take() {
            self.scope.clear_timeout_with_handle(id);
        }
        let Some(deadline) = deadline else { return };
        let on_timer = self.on_timer.borrow();
        let Some(callback) = on_timer.as_ref() else {
            return;
        };
        let delay = (deadline - now()).clamp(0.0, i32::MAX as f64) as i32;
        match self
            .scope
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                delay,
            ) {
            Ok(id) => *self.timer.borrow_mut() = Some(id),
            Err(e) => {
                web_sys::console::error_2(&"sqlite-tabs worker: setTimeout failed".into(), &e)
            }
        }
    }

    fn timer_fired(&self) {
        self.timer.borrow_mut().take();
        let (out, deadline) = match &mut *self.state.borrow_mut() {
            State::Open { scheduler, .. } => (scheduler.on_timer(now()), scheduler.next_deadline()),
            _ => return,
        };
        self.send(out);
        self.rearm(deadline);
    }

    fn on_message(self: &Rc<Self>, event: MessageEvent) {
        let data = event.data();
        if data.is_null() {
            // index.js's request to load the wasm, which db-worker.js acts on;
            // one that arrives late has nothing left to do.
            return;
        }
        let Some(bytes) = message_bytes(&data) else {
            self.post(&FromWorker::Rejected(Error::bad_request(
                "sqlite-tabs worker: expected a protocol message (ArrayBuffer)",
            )));
            return;
        };
        match decode::<ToWorker>(&bytes) {
            Ok(ToWorker::Open(params)) => self.open(params),
            Ok(ToWorker::Request(envelope)) => {
                self.local.set(Some(envelope.id.client));
                self.request(envelope)
            }
            Ok(ToWorker::Close) => self.close(),
            Ok(ToWorker::Attach { client }) => match event.ports().get(0).dyn_into::<MessagePort>()
            {
                Ok(port) => self.attach(client, port),
                Err(_) => self.post(&FromWorker::Rejected(Error::bad_request(
                    "Attach arrived without its MessagePort",
                ))),
            },
            Ok(ToWorker::Gone { client }) => self.gone(client),
            Ok(ToWorker::Warm) => self.warm(),
            Ok(ToWorker::RouterLink) => match event.ports().get(0).dyn_into::<MessagePort>() {
                Ok(port) => self.link_router(port),
                Err(_) => self.post(&FromWorker::Rejected(Error::bad_request(
                    "RouterLink arrived without its MessagePort",
                ))),
            },
            Err(e) => self.reject(&bytes, e.into(), None),
        }
    }

    /// Answers an undecodable message: to its request id when readable.
    fn reject(&self, bytes: &[u8], error: Error, client: Option<ClientId>) {
        match peek_request_id(bytes) {
            Some(id) => self.post_to(
                id.client,
                &FromWorker::Reply {
                    id,
                    result: Err(error),
                    change: None,
                },
            ),
            None => match client {
                Some(client) => self.post_to(client, &FromWorker::Rejected(error)),
                None => self.post(&FromWorker::Rejected(error)),
            },
        }
    }

    fn attach(self: &Rc<Self>, client: ClientId, port: MessagePort) {
        let handler = self.handler(move |worker, bytes, _| {
            match decode::<ToWorker>(&bytes) {
                // A port carries requests of the client it was brokered for.
                Ok(ToWorker::Request(envelope)) if envelope.id.client == client => {
                    worker.request(envelope)
                }
                Ok(_) => worker.post_to(
                    client,
                    &FromWorker::Rejected(Error::bad_request(
                        "only requests of this port's client may be sent on it",
                    )),
                ),
                Err(e) => worker.reject(&bytes, e.into(), Some(client)),
            }
        });
        port.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        // Replacing an older port drops its handler with it.
        if let Some(old) = self.ports.borrow_mut().insert(
            client,
            Attached {
                port,
                _handler: handler,
            },
        ) {
            old.port.close();
        }
    }

    /// Listens to the router on `port`, replacing an earlier link.
    fn link_router(self: &Rc<Self>, port: MessagePort) {
        let handler = self.handler(|worker, bytes, event| {
            match decode::<FromRouter>(&bytes) {
                Ok(FromRouter::Attach { client, .. }) => {
                    match event.ports().get(0).dyn_into::<MessagePort>() {
                        Ok(port) => worker.attach(client, port),
                        Err(_) => web_sys::console::warn_1(
                            &"sqlite-tabs worker: Attach arrived without its MessagePort".into(),
                        ),
                    }
                }
                Ok(FromRouter::Gone { client }) => worker.gone(client),
                // The router sends nothing else on this link.
                Ok(_) => {}
                Err(e) => web_sys::console::warn_1(
                    &format!("sqlite-tabs worker: from the router: {e}").into(),
                ),
            }
        });
        port.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        if let Some((old, _)) = self.router_link.borrow_mut().replace((port, handler)) {
            old.close();
        }
    }

    fn gone(&self, client: ClientId) {
        if let Some(old) = self.ports.borrow_mut().remove(&client) {
            old.port.close();
        }
        let (out, deadline) = match &mut *self.state.borrow_mut() {
            State::Open { scheduler, .. } => (
                scheduler.client_gone(client, now()),
                scheduler.next_deadline(),
            ),
            _ => return,
        };
        self.send(out);
        self.rearm(deadline);
    }

    /// Runs what opening runs (pragmas, schema, an upsert, a query) on a
    /// throwaway in-memory database, once and only while idle: V8 compiles
    /// wasm functions on their first call, which made a takeover's Open
    /// ~20 ms slower in a worker that had never run SQLite.
    fn warm(&self) {
        if self.warmed.replace(true) || !matches!(*self.state.borrow(), State::Idle) {
            return;
        }
        let warmed = Connection::open_in_memory()
            .map_err(sql_error)
            .and_then(|conn| Engine::new(conn, &EngineOptions::default()));
        if let Err(e) = warmed {
            web_sys::console::warn_1(&format!("sqlite-tabs worker: warm-up failed: {e}").into());
        }
    }

    fn open(self: &Rc<Self>, params: OpenParams) {
        {
            let mut state = self.state.borrow_mut();
            if !matches!(*state, State::Idle) {
                drop(state);
                self.post(&FromWorker::Opened(Err(Error::bad_request(
                    "this worker already opened a database",
                ))));
                return;
            }
            *state = State::Opening(Vec::new());
        }
        let this = self.clone();
        spawn_local(async move {
            let opened = open_database(&params, &EngineOptions::default()).await;
            let queued = match std::mem::replace(&mut *this.state.borrow_mut(), State::Idle) {
                State::Opening(queued) => queued,
                _ => Vec::new(),
            };
            match opened {
                Ok(db) => {
                    let info = OpenInfo {
                        storage: db.storage,
                        seq: db.engine.seq(),
                        epoch: db.engine.epoch(),
                    };
                    let changes = BroadcastChannel::new(&names::changes_channel(&params.name)).ok();
                    *this.state.borrow_mut() = State::Open {
                        scheduler: Box::new(Scheduler::new(db.engine, DEFAULT_LEASE_MS)),
                        storage: db.storage,
                        pool: db.pool,
                        changes,
                    };
                    this.serve_fallback(&params.name, info.epoch);
                    this.post(&FromWorker::Opened(Ok(info)));
                    for envelope in queued {
                        this.request(envelope);
                    }
                }
                Err(e) => {
                    *this.state.borrow_mut() = State::Idle;
                    for envelope in queued {
                        this.post_to(
                            envelope.id.client,
                            &FromWorker::Reply {
                                id: envelope.id,
                                result: Err(e.clone()),
                                change: None,
                            },
                        );
                    }
                    this.post(&FromWorker::Opened(Err(e)));
                }
            }
        });
    }

    /// Takes a request. Writes that may have company (see [`GroupWait`]) are
    /// not run at once but collected until the messages already queued for
    /// this worker have been read (one hop through a MessageChannel): writes
    /// that arrive while a commit flushes then share the next commit (group
    /// commit). Anything behind them waits in the same queue, so every
    /// client's requests keep their order.
    fn request(&self, envelope: RequestEnvelope) {
        let mut state = self.state.borrow_mut();
        // Nothing waits before it and nothing would share its commit: run it
        // now rather than pay the collecting hop (reads, a lone writer).
        let run_now = match &mut *state {
            State::Open { scheduler, .. } => {
                let groupable = scheduler.groupable(&envelope.request);
                let at_once = self
                    .group_wait
                    .borrow_mut()
                    .run_at_once(&envelope, groupable);
                at_once && self.inbox.borrow().is_empty()
            }
            _ => false,
        };
        match &mut *state {
            State::Open { scheduler, .. } if run_now => {
                let out = scheduler.submit(envelope, now());
                let deadline = scheduler.next_deadline();
                drop(state);
                self.send(out);
                self.rearm(deadline);
                self.checkpoint_if_due();
            }
            State::Open { .. } => {
                drop(state);
                self.inbox.borrow_mut().push(envelope);
                if !self.drain_scheduled.replace(true) {
                    if let Err(e) = self.kick.port2().post_message(&JsValue::NULL) {
                        self.drain_scheduled.set(false);
                        web_sys::console::error_2(
                            &"sqlite-tabs worker: scheduling failed".into(),
                            &e,
                        );
                        self.drain();
                    }
                }
            }
            State::Opening(queued) => queued.push(envelope),
            State::Idle => {
                drop(state);
                self.not_leader(envelope);
            }
        }
    }

    /// Runs everything collected since the last drain.
    fn drain(&self) {
        self.drain_scheduled.set(false);
        let envelopes = std::mem::take(&mut *self.inbox.borrow_mut());
        if envelopes.is_empty() {
            return;
        }
        let mut state = self.state.borrow_mut();
        let State::Open { scheduler, .. } = &mut *state else {
            drop(state);
            for envelope in envelopes {
                self.not_leader(envelope);
            }
            return;
        };
        let out = scheduler.submit_all(envelopes, now());
        let deadline = scheduler.next_deadline();
        drop(state);
        self.send(out);
        self.rearm(deadline);
        self.checkpoint_if_due();
    }

    /// Checkpoints the WAL once the answers are sent, unless more requests
    /// are waiting to be run (the drain after them does it).
    fn checkpoint_if_due(&self) {
        if !self.inbox.borrow().is_empty() {
            return;
        }
        if let State::Open { scheduler, .. } = &mut *self.state.borrow_mut() {
            scheduler.checkpoint_if_due();
        }
    }

    /// Answers a request this worker cannot serve: the client re-sends it to
    /// whichever tab leads next.
    fn not_leader(&self, envelope: RequestEnvelope) {
        self.post_to(
            envelope.id.client,
            &FromWorker::Reply {
                id: envelope.id,
                result: Err(Error::new(
                    ErrorCode::LeaderLost,
                    "this worker does not own the database (any more)",
                )),
                change: None,
            },
        );
    }

    fn close(&self) {
        let previous = std::mem::replace(&mut *self.state.borrow_mut(), State::Idle);
        self.rearm(None);
        self.fallback.borrow_mut().take();
        if let State::Open {
            mut scheduler,
            storage,
            pool,
            changes,
        } = previous
        {
            let out = scheduler.fail_waiting(&Error::new(
                ErrorCode::LeaderLost,
                "the leader gave up the database before this request ran",
            ));
            self.send(out);
            if let Some(channel) = changes {
                channel.close();
            }
            let db = OpenDatabase {
                engine: scheduler.into_engine(),
                storage,
                pool,
            };
            if let Err(e) = db.close() {
                web_sys::console::error_1(&e.to_string().into());
            }
        }
        for (_, attached) in self.ports.borrow_mut().drain() {
            attached.port.close();
        }
        self.post(&FromWorker::Closed);
    }
}

/// The bytes of a message's data if it is a protocol message (an ArrayBuffer).
fn message_bytes(data: &JsValue) -> Option<Vec<u8>> {
    data.dyn_ref::<ArrayBuffer>()
        .map(|buffer| Uint8Array::new(buffer).to_vec())
}

/// Messages at least this long are transferred, shorter ones copied: a
/// transfer costs more than copying a short message (measured: ~5 us per
/// transfer to the page, ~28 us through a MessagePort).
const TRANSFER_MIN_BYTES: u32 = 64 * 1024;

/// The transfer list for posting `buffer`, or `None` to copy it.
fn transfer_list(buffer: &ArrayBuffer) -> Option<js_sys::Array> {
    // Small messages go without a transfer list at all: an empty one still
    // costs its conversion (measured: a round trip 1-2% slower).
    (buffer.byte_length() >= TRANSFER_MIN_BYTES).then(|| js_sys::Array::of1(buffer))
}

fn to_buffer(message: &FromWorker) -> ArrayBuffer {
    let bytes = encode(message);
    let array = Uint8Array::new_with_length(bytes.len() as u32);
    array.copy_from(&bytes);
    array.buffer()
}

/// Starts the worker: called once by `db-worker.js` after the module loads.
/// Installs the message handler, announces [`FromWorker::Ready`], then
/// handles `early`: the `message` events that `db-worker.js` kept while the
/// wasm loaded (a leader's tab sends Open without waiting for Ready).
#[wasm_bindgen]
pub fn start(early: Array) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let Ok(kick) = MessageChannel::new() else {
        web_sys::console::error_1(&"sqlite-tabs worker: no MessageChannel".into());
        return;
    };
    let worker = Rc::new(Worker {
        scope: scope.clone(),
        state: RefCell::new(State::Idle),
        inbox: RefCell::new(Vec::new()),
        drain_scheduled: Cell::new(false),
        group_wait: RefCell::new(GroupWait::default()),
        kick,
        _on_kick: RefCell::new(None),
        ports: RefCell::new(HashMap::new()),
        router_link: RefCell::new(None),
        local: Cell::new(None),
        warmed: Cell::new(false),
        fallback: RefCell::new(None),
        timer: RefCell::new(None),
        on_timer: RefCell::new(None),
    });
    let weak = Rc::downgrade(&worker);
    let on_kick = Closure::<dyn FnMut()>::new(move || {
        if let Some(w) = weak.upgrade() {
            w.drain();
        }
    });
    worker
        .kick
        .port1()
        .set_onmessage(Some(on_kick.as_ref().unchecked_ref()));
    *worker._on_kick.borrow_mut() = Some(on_kick);
    let weak = Rc::downgrade(&worker);
    *worker.on_timer.borrow_mut() = Some(Closure::new(move || {
        if let Some(w) = weak.upgrade() {
            w.timer_fired();
        }
    }));
    let handler_worker = worker.clone();
    let handler = MessageHandler::new(move |event: MessageEvent| {
        handler_worker.on_message(event);
    });
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker; keep it reachable instead of
    // leaking it with forget().
    HANDLER.with(|h| *h.borrow_mut() = Some(handler));
    worker.post(&FromWorker::Ready);
    for event in early.iter() {
        if let Ok(event) = event.dyn_into::<MessageEvent>() {
            worker.on_message(event);
        }
    }
}
