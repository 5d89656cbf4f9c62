use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use gloo_timers::callback::Timeout;
use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use sqlite_tabs_protocol::{
    decode, encode, names, Answer, ChangeEvent, ClientId, Epoch, Error, ErrorCode, FromRouter,
    FromWorker, OpenInfo, OpenParams, Reply, Request, RequestEnvelope, RequestId, Storage,
    ToRouter, ToWorker, TxId,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local, JsFuture};
use web_sys::{
    BroadcastChannel, ErrorEvent, MessageChannel, MessageEvent, MessagePort, SharedWorker, Worker,
    WorkerOptions, WorkerType,
};

use crate::convert::{
    batch_len, batch_statements, rows_to_objects, rows_to_raw, run_result, run_results,
    to_js_error, to_params, to_sql,
};
use crate::locks::{self, Held};
use crate::seq::SeqTracker;

const DEFAULT_TIMEOUT_MS: u32 = 30_000;
/// Statements per message of a `batch()` larger than this, after the first:
/// large enough that the cost per message stays negligible.
const BATCH_PART: u32 = 8192;
/// Statements in the first message of a large `batch()`. The worker runs
/// statements far slower than this page packs them, so what counts is when
/// it can start: a first part of 8,192 reached it 1 to 4 ms after the call
/// (traced), one of 1,024 in under 1 ms.
const BATCH_FIRST_PART: u32 = 1024;
/// Opening may wait up to 10 s for a previous owner to release the files.
const DEFAULT_OPEN_TIMEOUT_MS: u32 = 20_000;
const CLOSE_TIMEOUT_MS: u32 = 2_000;

type Handler = Closure<dyn FnMut(JsValue)>;

struct Subscriber {
    id: u32,
    tables: Option<Vec<String>>,
    target: Target,
}

#[derive(Clone)]
enum Target {
    /// `subscribe()`: called with `{ tables, seq }`.
    Callback(Function),
    /// `watch()`: re-runs its query.
    Watch(Rc<Watch>),
}

/// A live query: re-run when a table it reads changes; the callback gets
/// fresh rows only when they differ from the last ones.
struct Watch {
    sql: String,
    params: Vec<sqlite_tabs_protocol::Value>,
    callback: Function,
    running: Cell<bool>,
    dirty: Cell<bool>,
    stopped: Cell<bool>,
    last: RefCell<Option<sqlite_tabs_protocol::Rows>>,
}

struct Pending {
    /// The encoded `ToWorker::Request` (several for a batch sent in parts),
    /// kept to send again to a new leader. Encoded once: a large batch is
    /// neither cloned nor encoded twice.
    messages: Vec<Vec<u8>>,
    /// Whether the next leader may simply run it (see [`retryable`]).
    retryable: bool,
    reply: Waiter,
    /// When it fails with TIMEOUT (`Date.now()` milliseconds).
    deadline: f64,
}

/// Who waits for a request's answer.
enum Waiter {
    /// An internal caller awaiting [`Inner::call`].
    Task(oneshot::Sender<Result<Reply, Error>>),
    /// A promise of the JS API, settled from the message handler the answer
    /// arrives in. Going through a future instead (`future_to_promise`) costs
    /// two executor hops per call (queueMicrotask, wake, poll), a measurable
    /// part of a round trip of ~60-90 us (W0, issue #5).
    Promise {
        resolve: Function,
        reject: Function,
        /// Turns the answer into what the promise resolves to.
        answer: fn(Reply) -> Result<JsValue, Error>,
    },
}

impl Waiter {
    fn settle(self, result: Result<Reply, Error>) {
        match self {
            Waiter::Task(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Promise {
                resolve,
                reject,
                answer,
            } => {
                // Settling only queues the promise's reactions: no user code
                // runs inside this call.
                let _ = match result.and_then(answer) {
                    Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
                    Err(e) => reject.call1(&JsValue::UNDEFINED, &to_js_error(&e)),
                };
            }
        }
    }
}

/// The port to the leader's worker, brokered by the router for one epoch.
struct Link {
    epoch: Epoch,
    port: MessagePort,
    _handler: Handler,
}

/// Shared state of one open database in this tab.
struct Inner {
    name: String,
    worker: Worker,
    /// The SharedWorker router's port; `None` in fallback mode.
    router: RefCell<Option<MessagePort>>,
    /// Where the router comes from, to start a new one if it dies.
    router_source: Option<Spawn>,
    /// Waits on the router's lock: granted when the router died.
    router_watch: RefCell<Option<Held>>,
    /// Reads the router's port (set again on a new router's port).
    router_handler: RefCell<Option<Handler>>,
    /// Fallback mode (no SharedWorker): requests and replies on channels.
    fallback: Option<(BroadcastChannel, BroadcastChannel)>,
    client: ClientId,
    next_seq: Cell<u64>,
    // Ordered by id, so re-sent requests keep their order.
    pending: RefCell<BTreeMap<RequestId, Pending>>,
    /// One timer for the earliest deadline of all pending requests, rather
    /// than a setTimeout/clearTimeout pair per request.
    deadline_timer: RefCell<Option<Timeout>>,
    link: RefCell<Option<Link>>,
    epoch: Cell<Epoch>,
    timeout_ms: u32,
    memory_fallback: bool,
    closed: Cell<bool>,
    storage: Cell<Storage>,
    is_leader: Cell<bool>,
    /// The epoch this tab's own worker leads, while it does.
    lead_epoch: Cell<Option<Epoch>>,
    leader_lock: RefCell<Option<Held>>,
    tab_lock: RefCell<Option<Held>>,
    /// Set when this tab's worker died or could not load: the tab then
    /// never leads (it stays a follower, served by the leader's worker).
    worker_failed: Cell<bool>,
    worker_opened: RefCell<Option<oneshot::Sender<Result<OpenInfo, Error>>>>,
    worker_closed: RefCell<Option<oneshot::Sender<()>>>,
    connected: RefCell<Option<oneshot::Sender<Result<(), Error>>>>,
    subscribers: RefCell<Vec<Subscriber>>,
    leader_listeners: RefCell<Vec<(u32, Function)>>,
    next_listener: Cell<u32>,
    seen: RefCell<SeqTracker>,
    catching_up: Cell<bool>,
    changes: BroadcastChannel,
    // Kept so the handlers live exactly as long as the database.
    handlers: RefCell<Vec<Handler>>,
}

fn random_client_id() -> ClientId {
    // 53 random bits; uniqueness across tabs only needs to be overwhelmingly
    // likely, and Math.random is available everywhere.
    let hi = (js_sys::Math::random() * f64::from(1u32 << 21)) as u64;
    let lo = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    ClientId((hi << 32) | lo)
}

fn option_str(options: &JsValue, key: &str) -> Option<String> {
    Reflect::get(options, &key.into()).ok()?.as_string()
}

fn option_bool(options: &JsValue, key: &str) -> bool {
    Reflect::get(options, &key.into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn timeout_option(options: &JsValue, key: &str, default: u32) -> Result<u32, Error> {
    match Reflect::get(options, &key.into())
        .ok()
        .and_then(|v| v.as_f64())
    {
        None => Ok(default),
        Some(ms) if ms.is_finite() && ms > 0.0 && ms <= f64::from(i32::MAX) => Ok(ms as u32),
        // Formatted by JS: Rust's float formatting would add ~15 KB to the wasm.
        Some(ms) => Err(Error::bad_request(format!(
            "{key} must be a positive number of milliseconds, got {}",
            String::from(
                js_sys::Number::from(ms)
                    .to_string_with_radix(10)
                    .unwrap_or_default()
            )
        ))),
    }
}

fn buffer_of(bytes: &[u8]) -> ArrayBuffer {
    let array = Uint8Array::new_with_length(bytes.len() as u32);
    array.copy_from(bytes);
    array.buffer()
}

fn bytes_of(data: &JsValue) -> Option<Vec<u8>> {
    data.dyn_ref::<ArrayBuffer>()
        .map(|b| Uint8Array::new(b).to_vec())
}

/// Messages at least this long are transferred; shorter ones are copied,
/// which costs less than a transfer (measured: ~8 us per transfer to a worker,
/// ~28 us through a MessagePort).
const TRANSFER_MIN_BYTES: usize = 64 * 1024;

/// What to transfer when posting `buffer` (and `extra`, a port, if any);
/// `None` when nothing is, so that the message goes without a transfer list
/// (measured: an empty one makes a round trip 1-2% slower).
fn transfer_list(buffer: &ArrayBuffer, extra: Option<&JsValue>) -> Option<Array> {
    let large = buffer.byte_length() as usize >= TRANSFER_MIN_BYTES;
    if !large && extra.is_none() {
        return None;
    }
    let transfer = Array::new();
    if large {
        transfer.push(buffer);
    }
    if let Some(extra) = extra {
        transfer.push(extra);
    }
    Some(transfer)
}

fn send_to_port(port: &MessagePort, bytes: &[u8], extra: Option<&JsValue>) -> Result<(), Error> {
    let buffer = buffer_of(bytes);
    match transfer_list(&buffer, extra) {
        Some(transfer) => port.post_message_with_transferable(&buffer, &transfer),
        None => port.post_message(&buffer),
    }
    .map_err(|e| {
        Error::new(
            ErrorCode::WorkerFailed,
            format!("postMessage failed: {e:?}"),
        )
    })
}

/// Whether a request may simply be sent again to the next leader.
fn retryable(request: &Request) -> bool {
    !matches!(
        request,
        Request::Exec { tx: Some(_), .. }
            | Request::Query { tx: Some(_), .. }
            | Request::Run { tx: Some(_), .. }
    )
}

fn leader_lost(what: &str) -> Error {
    Error::new(
        ErrorCode::LeaderLost,
        format!("the tab that owned the database went away; {what}"),
    )
}

impl Inner {
    fn post_worker(&self, message: &ToWorker, extra: Option<&JsValue>) -> Result<(), Error> {
        self.post_worker_bytes(&encode(message), extra)
    }

    fn post_worker_bytes(&self, bytes: &[u8], extra: Option<&JsValue>) -> Result<(), Error> {
        let buffer = buffer_of(bytes);
        match transfer_list(&buffer, extra) {
            Some(transfer) => self.worker.post_message_with_transfer(&buffer, &transfer),
            None => self.worker.post_message(&buffer),
        }
        .map_err(|e| {
            Error::new(
                ErrorCode::WorkerFailed,
                format!("could not send to the database worker: {e:?}"),
            )
        })
    }

    fn post_router(&self, message: &ToRouter) {
        self.post_router_with(message, None);
    }

    /// Posts to the router with `port` transferred along, if any.
    fn post_router_with(&self, message: &ToRouter, port: Option<&JsValue>) {
        let router = self.router.borrow();
        let Some(router) = router.as_ref() else {
            return;
        };
        if let Err(e) = send_to_port(router, &encode(message), port) {
            web_sys::console::error_1(&format!("sqlite-tabs: {e}").into());
        }
    }

    /// Tells the router that this tab's worker leads in `epoch`, with a
    /// port to that worker: the router attaches joining tabs there, so they
    /// do not wait for this page's main thread (busy with the app's own
    /// work at times). Without the port it sends them through this tab.
    fn announce_leader(&self, epoch: Epoch) {
        let message = ToRouter::LeaderReady {
            client: self.client,
            epoch,
        };
        if self.router.borrow().is_none() {
            return;
        }
        let link = MessageChannel::new().ok().filter(|channel| {
            self.post_worker(&ToWorker::RouterLink, Some(&channel.port1()))
                .is_ok()
        });
        match link {
            Some(channel) => self.post_router_with(&message, Some(&channel.port2())),
            None => self.post_router(&message),
        }
    }

    /// Fallback mode: the leader's worker answers on the replies channel.
    fn on_fallback_message(self: &Rc<Self>, data: JsValue) {
        let Some(bytes) = bytes_of(&data) else { return };
        match decode::<FromWorker>(&bytes) {
            Ok(FromWorker::Reply { id, result, change }) if id.client == self.client => {
                if let Some(change) = change {
                    self.on_change(change);
                }
                self.on_reply(id, result);
            }
            // Answers of a group are for one client.
            Ok(FromWorker::Replies(answers))
                if answers.first().is_some_and(|a| a.id.client == self.client) =>
            {
                self.on_answers(answers);
            }
            Ok(FromWorker::Leader { epoch }) if epoch > self.epoch.get() => {
                self.new_epoch(epoch, None);
            }
            _ => {}
        }
    }

    /// Messages of the tab's own worker (and replies on the leader link).
    fn on_worker_message(self: &Rc<Self>, data: JsValue) {
        let Some(bytes) = bytes_of(&data) else { return };
        let message = match decode::<FromWorker>(&bytes) {
            Ok(m) => m,
            Err(e) => {
                web_sys::console::error_1(
                    &format!("sqlite-tabs: undecodable message from a worker: {e}").into(),
                );
                return;
            }
        };
        match message {
            // The tab does not wait for it: messages sent before it are kept
            // by db-worker.js until the wasm runs.
            FromWorker::Ready => {}
            FromWorker::Opened(result) => {
                if let Some(tx) = self.worker_opened.borrow_mut().take() {
                    let _ = tx.send(result);
                }
            }
            FromWorker::Reply { id, result, change } => {
                if let Some(change) = change {
                    self.on_change(change);
                }
                self.on_reply(id, result);
            }
            FromWorker::Replies(answers) => self.on_answers(answers),
            FromWorker::Changed(event) => self.on_change(event),
            FromWorker::ChangedAll(events) => {
                for event in events {
                    self.on_change(event);
                }
            }
            FromWorker::Closed => {
                if let Some(tx) = self.worker_closed.borrow_mut().take() {
                    let _ = tx.send(());
                }
            }
            FromWorker::Rejected(e) => {
                web_sys::console::warn_1(
                    &format!("sqlite-tabs: a worker rejected a message: {e}").into(),
                );
            }
            // Only sent on the fallback channel.
            FromWorker::Leader { .. } => {}
        }
    }

    fn on_answers(self: &Rc<Self>, answers: Vec<Answer>) {
        for Answer { id, result, change } in answers {
            if let Some(change) = change {
                self.on_change(change);
            }
            self.on_reply(id, result);
        }
    }

    fn on_reply(&self, id: RequestId, result: Result<Reply, Error>) {
        let mut pending = self.pending.borrow_mut();
        // A worker that no longer leads answers LEADER_LOST: keep the request
        // for the next leader instead of failing it.
        if matches!(&result, Err(e) if e.code == ErrorCode::LeaderLost) {
            if let Some(p) = pending.get(&id) {
                if p.retryable {
                    return;
                }
            }
        }
        // A missing entry means the caller already timed out.
        let Some(p) = pending.remove(&id) else { return };
        drop(pending);
        p.reply.settle(result);
    }

    /// The tab's own worker died or could not load.
    fn on_worker_error(&self, message: String) {
        let error = Error::new(
            ErrorCode::WorkerFailed,
            format!("the database worker failed: {message}"),
        );
        self.worker_failed.set(true);
        if self.is_leader.get() && !self.closed.get() {
            // A worker that threw (a wasm trap leaves its state unknown)
            // must not serve on: stop it, which releases its OPFS access
            // handles, and let another tab open the file. This tab's pending
            // requests go to that leader when it connects.
            self.worker.terminate();
            self.set_leader(false);
            self.release_leader_lock();
        }
        if let Some(tx) = self.worker_opened.borrow_mut().take() {
            let _ = tx.send(Err(error.clone()));
        }
        if let Some(tx) = self.connected.borrow_mut().take() {
            let _ = tx.send(Err(error));
        } else {
            web_sys::console::error_1(
                &format!("sqlite-tabs: {error}; this tab will not lead").into(),
            );
        }
    }

    fn on_router_message(self: &Rc<Self>, event: &MessageEvent) {
        let Some(bytes) = bytes_of(&event.data()) else {
            return;
        };
        let port = event.ports().get(0).dyn_into::<MessagePort>().ok();
        match decode::<FromRouter>(&bytes) {
            Ok(FromRouter::Connect { epoch, .. }) => {
                if let Some(port) = port {
                    self.connect(epoch, port);
                }
            }
            Ok(FromRouter::Attach { client, .. }) => {
                if let Some(port) = port {
                    if let Err(e) = self.post_worker(&ToWorker::Attach { client }, Some(&port)) {
                        web_sys::console::error_1(&format!("sqlite-tabs: {e}").into());
                    }
                }
            }
            Ok(FromRouter::Gone { client }) => {
                let _ = self.post_worker(&ToWorker::Gone { client }, None);
            }
            Ok(FromRouter::Welcome) => self.watch_router(),
            Ok(FromRouter::LeaderLost { epoch }) => {
                let mut link = self.link.borrow_mut();
                if link.as_ref().is_some_and(|l| l.epoch == epoch) {
                    if let Some(old) = link.take() {
                        old.port.close();
                    }
                }
            }
            Err(e) => {
                web_sys::console::warn_1(&format!("sqlite-tabs: from the router: {e}").into());
            }
        }
    }

    /// Waits on the router's Web Lock: the router holds it for its life, so
    /// being granted it means the router died (its tab's renderer crashed).
    fn watch_router(self: &Rc<Self>) {
        if self.router_watch.borrow().is_some() || self.closed.get() {
            return;
        }
        let weak = Rc::downgrade(self);
        let lock = names::router_lock(&self.name);
        match locks::hold(&lock, move || {
            if let Some(inner) = weak.upgrade() {
                inner.router_died();
            }
        }) {
            Ok(held) => *self.router_watch.borrow_mut() = Some(held),
            Err(e) => web_sys::console::error_2(&"sqlite-tabs: Web Locks failed".into(), &e),
        }
    }

    /// Starts a new router (the browser makes a new SharedWorker since the
    /// old one is gone) and tells it who this tab is and whether it leads.
    fn router_died(self: &Rc<Self>) {
        if let Some(held) = self.router_watch.borrow_mut().take() {
            held.release();
        }
        if self.closed.get() {
            return;
        }
        let Some(source) = &self.router_source else {
            return;
        };
        let port = match start_router(source, &self.name) {
            Ok(port) => port,
            Err(e) => {
                web_sys::console::error_1(&format!("sqlite-tabs: {e}").into());
                return;
            }
        };
        if let Some(handler) = &*self.router_handler.borrow() {
            port.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        }
        if let Some(old) = self.router.borrow_mut().replace(port) {
            old.close();
        }
        self.post_router(&ToRouter::Hello {
            client: self.client,
            tab_lock: names::tab_lock(&self.name, self.client),
        });
        if self.is_leader.get() {
            self.announce_leader(self.epoch.get());
        }
    }

    /// A port to the leader of `epoch`: send everything still pending there.
    fn connect(self: &Rc<Self>, epoch: Epoch, port: MessagePort) {
        if self.closed.get() || epoch < self.epoch.get() {
            port.close();
            return;
        }
        let weak = Rc::downgrade(self);
        let handler = Handler::new(move |event: JsValue| {
            if let (Some(inner), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) {
                inner.on_worker_message(event.data());
            }
        });
        port.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        if let Some(old) = self.link.borrow_mut().replace(Link {
            epoch,
            port,
            _handler: handler,
        }) {
            old.port.close();
        }
        self.new_epoch(epoch, None);
    }

    /// Requests can reach the leader of `epoch`: send what is pending.
    /// `head` is the commit sequence number the leader opened at, when this
    /// tab's own worker is that leader (it said so in Opened).
    fn new_epoch(self: &Rc<Self>, epoch: Epoch, head: Option<u64>) {
        let new_leader = epoch > self.epoch.get();
        if !new_leader && self.lead_epoch.get() == Some(epoch) {
            // The router linking this tab to its own worker, which it has
            // been sending to directly since the worker opened: nothing
            // was lost on the way.
            return;
        }
        self.epoch.set(epoch);
        if new_leader {
            self.fail_lost_transactions();
            self.notify_leader_listeners();
        }
        self.resend_pending();
        let first = self.connected.borrow_mut().take();
        match (first, head) {
            (Some(tx), Some(head)) => {
                *self.seen.borrow_mut() = SeqTracker::new(head);
                let _ = tx.send(Ok(()));
            }
            // First connection: learn where the commit sequence stands.
            (Some(tx), None) => {
                let this = self.clone();
                spawn_local(async move {
                    let result = match this.call(Request::ChangesSince { after: u64::MAX }).await {
                        Ok(Reply::Changes { head, .. }) => {
                            *this.seen.borrow_mut() = SeqTracker::new(head);
                            Ok(())
                        }
                        Ok(other) => Err(unexpected(other)),
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(result);
                });
            }
            // A new leader: fetch notifications lost in the hand-over.
            (None, _) if new_leader => self.catch_up(true),
            (None, _) => {}
        }
    }

    /// The transaction a dead leader held is gone with it.
    /// Sends every unanswered request again, to whoever leads now (each
    /// is answered once: a write's id makes a second run a no-op).
    fn resend_pending(&self) {
        for p in self.pending.borrow().values() {
            for message in &p.messages {
                self.send(message);
            }
        }
    }

    fn fail_lost_transactions(&self) {
        let mut pending = self.pending.borrow_mut();
        let lost: Vec<RequestId> = pending
            .iter()
            .filter(|(_, p)| !p.retryable)
            .map(|(id, _)| *id)
            .collect();
        let lost: Vec<Pending> = lost.iter().filter_map(|id| pending.remove(id)).collect();
        drop(pending);
        for p in lost {
            p.reply.settle(Err(leader_lost(
                "its interactive transaction was rolled back",
            )));
        }
    }

    /// Posts an encoded `ToWorker::Request` to the leader's worker, or
    /// nowhere while there is none (it is sent when a leader connects).
    fn send(&self, message: &[u8]) {
        // This tab's own worker leads: post to it directly, a same-thread
        // hop, instead of through a MessagePort (about twice as slow per
        // round trip). The worker answers on the channel a request came in on.
        // Without a router too: the worker's request BroadcastChannel, made
        // as it opened, may not hear broadcasts yet when this tab learns it
        // leads (Chromium registers a new channel asynchronously), and a
        // request lost there would only end in its timeout.
        let sent = if self.lead_epoch.get() == Some(self.epoch.get()) {
            self.post_worker_bytes(message, None)
        } else if let Some((requests, _)) = &self.fallback {
            if let Err(e) = requests.post_message(&buffer_of(message)) {
                web_sys::console::warn_1(&e);
            }
            return;
        } else if let Some(link) = self.link.borrow().as_ref() {
            send_to_port(&link.port, message, None)
        } else {
            Ok(())
        };
        if let Err(e) = sent {
            web_sys::console::warn_1(&format!("sqlite-tabs: {e}").into());
        }
    }

    fn on_change(self: &Rc<Self>, event: ChangeEvent) {
        if !self.seen.borrow_mut().accept(event.seq) {
            return;
        }
        self.dispatch(&event.tables, event.seq, false);
        if self.seen.borrow().missing_after().is_some() {
            self.catch_up(false);
        }
    }

    /// Asks the leader for the commits this tab missed.
    fn catch_up(self: &Rc<Self>, always: bool) {
        if self.catching_up.replace(true) {
            return;
        }
        let this = self.clone();
        spawn_local(async move {
            let missing = this.seen.borrow().missing_after();
            let after = match (missing, always) {
                (Some(after), _) => Some(after),
                (None, true) => Some(this.seen.borrow().latest()),
                (None, false) => None,
            };
            if let Some(after) = after {
                if let Ok(Reply::Changes {
                    events,
                    complete,
                    head,
                }) = this.call(Request::ChangesSince { after }).await
                {
                    for event in events {
                        if this.seen.borrow_mut().accept(event.seq) {
                            this.dispatch(&event.tables, event.seq, false);
                        }
                    }
                    if !complete {
                        // Too far behind for the log: tell everyone to re-read.
                        this.seen.borrow_mut().skip_to(head);
                        this.dispatch(&[], head, true);
                    }
                }
            }
            this.catching_up.set(false);
        });
    }

    fn dispatch(self: &Rc<Self>, tables: &[String], seq: u64, resync: bool) {
        // Callbacks may subscribe or unsubscribe: iterate over a snapshot.
        let targets: Vec<Target> = self
            .subscribers
            .borrow()
            .iter()
            .filter(|s| match &s.tables {
                _ if resync => true,
                None => true,
                Some(wanted) => wanted.iter().any(|t| tables.contains(t)),
            })
            .map(|s| s.target.clone())
            .collect();
        let (callbacks, watches): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|t| matches!(t, Target::Callback(_)));
        for watch in watches {
            if let Target::Watch(watch) = watch {
                self.rerun(watch);
            }
        }
        let targets: Vec<Function> = callbacks
            .into_iter()
            .filter_map(|t| match t {
                Target::Callback(f) => Some(f),
                Target::Watch(_) => None,
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let ev = Object::new();
        let list: Array = tables.iter().map(|t| JsValue::from_str(t)).collect();
        let _ = Reflect::set(&ev, &"tables".into(), &list);
        let _ = Reflect::set(&ev, &"seq".into(), &JsValue::from_f64(seq as f64));
        if resync {
            let _ = Reflect::set(&ev, &"resync".into(), &JsValue::TRUE);
        }
        for callback in targets {
            if let Err(e) = callback.call1(&JsValue::UNDEFINED, &ev) {
                // One throwing subscriber must not starve the others.
                web_sys::console::error_2(&"sqlite-tabs: subscriber threw".into(), &e);
            }
        }
    }

    /// Runs a live query again (once more after the current run if one is
    /// in flight), calling back only when its rows changed.
    fn rerun(self: &Rc<Self>, watch: Rc<Watch>) {
        if watch.running.replace(true) {
            watch.dirty.set(true);
            return;
        }
        let this = self.clone();
        spawn_local(async move {
            loop {
                watch.dirty.set(false);
                let result = this
                    .call(Request::Query {
                        sql: watch.sql.clone(),
                        params: watch.params.clone(),
                        tx: None,
                    })
                    .await;
                if watch.stopped.get() {
                    break;
                }
                match result {
                    Ok(Reply::Rows(rows)) => {
                        let changed = watch.last.borrow().as_ref() != Some(&rows);
                        if changed {
                            let objects = rows_to_objects(&rows);
                            *watch.last.borrow_mut() = Some(rows);
                            if let Err(e) = watch.callback.call1(&JsValue::UNDEFINED, &objects) {
                                web_sys::console::error_2(
                                    &"sqlite-tabs: watch callback threw".into(),
                                    &e,
                                );
                            }
                        }
                    }
                    Ok(other) => web_sys::console::error_1(&unexpected(other).to_string().into()),
                    Err(e) => web_sys::console::error_1(
                        &format!("sqlite-tabs: live query failed: {e}").into(),
                    ),
                }
                if !watch.dirty.get() {
                    break;
                }
            }
            watch.running.set(false);
        });
    }

    fn set_leader(&self, leader: bool) {
        if !leader {
            self.lead_epoch.set(None);
        }
        if self.is_leader.replace(leader) != leader {
            self.notify_leader_listeners();
        }
    }

    /// Calls `onLeaderChange` listeners with this tab's role and the epoch.
    fn notify_leader_listeners(&self) {
        let leader = self.is_leader.get();
        let epoch = JsValue::from_f64(self.epoch.get().0 as f64);
        let listeners: Vec<Function> = self
            .leader_listeners
            .borrow()
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for f in listeners {
            if let Err(e) = f.call2(&JsValue::UNDEFINED, &JsValue::from_bool(leader), &epoch) {
                web_sys::console::error_2(&"sqlite-tabs: onLeaderChange callback threw".into(), &e);
            }
        }
    }

    /// Queues for the leader lock; when granted, opens the database in this
    /// tab's worker and tells the router.
    fn campaign(self: &Rc<Self>) {
        if self.closed.get() || self.worker_failed.get() {
            return;
        }
        let weak = Rc::downgrade(self);
        let lock = names::leader_lock(&self.name);
        match locks::hold(&lock, move || {
            if let Some(inner) = weak.upgrade() {
                spawn_local(async move { inner.lead().await });
            }
        }) {
            Ok(held) => *self.leader_lock.borrow_mut() = Some(held),
            Err(e) => web_sys::console::error_2(&"sqlite-tabs: Web Locks failed".into(), &e),
        }
    }

    async fn lead(self: &Rc<Self>) {
        if self.closed.get() || self.worker_failed.get() {
            self.release_leader_lock();
            return;
        }
        let (tx, rx) = oneshot::channel();
        *self.worker_opened.borrow_mut() = Some(tx);
        let params = OpenParams {
            name: self.name.clone(),
            memory_fallback: self.memory_fallback,
        };
        let opened = match self.post_worker(&ToWorker::Open(params), None) {
            Ok(()) => rx.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorCode::WorkerFailed,
                    "the worker stopped while opening",
                ))
            }),
            Err(e) => Err(e),
        };
        match opened {
            Ok(info) if !self.closed.get() => {
                self.storage.set(info.storage);
                // Without a router the worker announces its epoch on the
                // reply channel just before it answers Open, and that can
                // arrive first: this tab then adopted the epoch and sent
                // what was pending on the request channel, which the
                // worker may not hear yet (see `send`).
                let announced_first = self.epoch.get() == info.epoch;
                self.lead_epoch.set(Some(info.epoch));
                self.set_leader(true);
                self.announce_leader(info.epoch);
                // Serve this tab at once: the router's link to its own
                // worker (a round trip through the router) and asking where
                // the commit sequence stands (one more) add nothing here.
                self.new_epoch(info.epoch, Some(info.seq));
                if announced_first {
                    // Again, now straight to the worker.
                    self.resend_pending();
                }
            }
            Ok(_) => {}
            Err(e) => {
                // Let another tab try; tell whoever waits on open().
                self.release_leader_lock();
                if let Some(tx) = self.connected.borrow_mut().take() {
                    let _ = tx.send(Err(e));
                } else if !self.worker_failed.get() {
                    web_sys::console::error_1(
                        &format!("sqlite-tabs: this tab could not take over the database: {e}")
                            .into(),
                    );
                    // A running tab stays a candidate: queue again behind the
                    // others (each try waits up to 10 s for the files).
                    self.campaign();
                }
            }
        }
    }

    fn release_leader_lock(&self) {
        if let Some(held) = self.leader_lock.borrow_mut().take() {
            held.release();
        }
    }

    /// Closes the database in this tab's worker (releasing the files).
    async fn close_worker_db(&self) {
        let (tx, rx) = oneshot::channel();
        *self.worker_closed.borrow_mut() = Some(tx);
        if self.post_worker(&ToWorker::Close, None).is_ok() {
            // The timeout covers a worker that is stuck or gone.
            let _ = select(rx, TimeoutFuture::new(CLOSE_TIMEOUT_MS)).await;
        }
    }

    /// Gives up leadership; this tab queues for it again behind the others.
    async fn step_down(self: &Rc<Self>) {
        if !self.is_leader.get() || self.closed.get() {
            return;
        }
        self.close_worker_db().await;
        self.set_leader(false);
        self.release_leader_lock();
        self.campaign();
    }

    /// Sends a request and waits for its answer or its timeout.
    async fn call(self: &Rc<Self>, request: Request) -> Result<Reply, Error> {
        self.start(request).await
    }

    /// Sends a request now; the future it returns gets the answer.
    fn start(self: &Rc<Self>, request: Request) -> impl Future<Output = Result<Reply, Error>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, Waiter::Task(tx));
        async move {
            rx.await.unwrap_or_else(|_canceled| {
                Err(Error::new(ErrorCode::Closed, "the database was closed"))
            })
        }
    }

    /// A request of the JS API: sent now, in call order, and answered by a
    /// promise that `answer` resolves from the reply. A request that could
    /// not be built (bad arguments) rejects it.
    fn promise(
        self: &Rc<Self>,
        request: Result<Request, Error>,
        answer: fn(Reply) -> Result<JsValue, Error>,
    ) -> Promise {
        let (promise, waiter) = js_promise(answer);
        match (request, waiter) {
            (Ok(request), Some(waiter)) => self.enqueue(request, waiter),
            (Err(e), Some(waiter)) => waiter.settle(Err(e)),
            (_, None) => {}
        }
        promise
    }

    /// `batch()`: one request, or for a large batch one message per
    /// [`BATCH_PART`] statements (the first [`BATCH_FIRST_PART`]), each sent
    /// as soon as it is packed so that the leader's worker runs the first
    /// statements while this page still packs the rest (they run in one
    /// transaction all the same).
    fn batch(self: &Rc<Self>, stmts: &JsValue) -> Promise {
        let n = match batch_len(stmts) {
            Ok(n) if n > BATCH_PART => n,
            Ok(n) => {
                let request =
                    batch_statements(stmts, 0, n).map(|statements| Request::Batch { statements });
                return self.promise(request, batch_answer);
            }
            Err(e) => return self.promise(Err(e), batch_answer),
        };
        let (promise, waiter) = js_promise(batch_answer);
        let Some(waiter) = waiter else {
            return promise;
        };
        if self.closed.get() {
            waiter.settle(Err(Error::new(ErrorCode::Closed, "the database is closed")));
            return promise;
        }
        let id = self.next_id();
        let mut messages = Vec::new();
        let mut start = 0;
        while start < n {
            let part = if start == 0 {
                BATCH_FIRST_PART
            } else {
                BATCH_PART
            };
            let end = n.min(start + part);
            let request = match batch_statements(stmts, start, end) {
                Ok(statements) => Request::BatchPart {
                    index: messages.len() as u32,
                    last: end == n,
                    statements,
                },
                Err(e) => {
                    if !messages.is_empty() {
                        // Undo the parts already sent; nobody waits for this.
                        self.send(&encode(&ToWorker::Request(RequestEnvelope {
                            id,
                            request: Request::CancelBatch,
                            others_pending: false,
                        })));
                    }
                    waiter.settle(Err(e));
                    return promise;
                }
            };
            // Parts are never grouped (they hold their own transaction), so
            // the hint is moot.
            let message = encode(&ToWorker::Request(RequestEnvelope {
                id,
                request,
                others_pending: false,
            }));
            self.send(&message);
            messages.push(message);
            start = end;
        }
        self.track(id, messages, true, waiter);
        promise
    }

    fn next_id(&self) -> RequestId {
        let seq = self.next_seq.get() + 1;
        self.next_seq.set(seq);
        RequestId {
            client: self.client,
            seq,
        }
    }

    /// Sends a request; `waiter` gets its answer, or its timeout.
    fn enqueue(self: &Rc<Self>, request: Request, waiter: Waiter) {
        if self.closed.get() {
            waiter.settle(Err(Error::new(ErrorCode::Closed, "the database is closed")));
            return;
        }
        let id = self.next_id();
        let retryable = retryable(&request);
        // Nothing else awaiting an answer (the caller awaits each request
        // in turn): a write of this tab has no company to wait for.
        let others_pending = !self.pending.borrow().is_empty();
        let message = encode(&ToWorker::Request(RequestEnvelope {
            id,
            request,
            others_pending,
        }));
        self.send(&message);
        self.track(id, vec![message], retryable, waiter);
    }

    /// Keeps a sent request until it is answered or times out.
    fn track(
        self: &Rc<Self>,
        id: RequestId,
        messages: Vec<Vec<u8>>,
        retryable: bool,
        waiter: Waiter,
    ) {
        self.pending.borrow_mut().insert(
            id,
            Pending {
                messages,
                retryable,
                reply: waiter,
                deadline: js_sys::Date::now() + f64::from(self.timeout_ms),
            },
        );
        self.arm_deadline_timer();
    }

    /// Arms the deadline timer for the earliest pending deadline unless it
    /// is armed already (it then fires no later than that deadline).
    fn arm_deadline_timer(self: &Rc<Self>) {
        if self.deadline_timer.borrow().is_some() {
            return;
        }
        let earliest = self
            .pending
            .borrow()
            .values()
            .map(|p| p.deadline)
            .fold(f64::INFINITY, f64::min);
        if !earliest.is_finite() {
            return;
        }
        let delay = (earliest - js_sys::Date::now()).clamp(0.0, f64::from(u32::MAX)) as u32;
        let weak = Rc::downgrade(self);
        *self.deadline_timer.borrow_mut() = Some(Timeout::new(delay, move || {
            if let Some(inner) = weak.upgrade() {
                inner.expire_pending();
            }
        }));
    }

    /// Fails the requests whose deadline passed with TIMEOUT.
    fn expire_pending(self: &Rc<Self>) {
        self.deadline_timer.borrow_mut().take();
        let now = js_sys::Date::now();
        let waiting = if self.link.borrow().is_none() {
            " (no tab owned the database in that time)"
        } else {
            ""
        };
        let expired: Vec<Pending> = {
            let mut pending = self.pending.borrow_mut();
            let ids: Vec<RequestId> = pending
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in expired {
            p.reply.settle(Err(Error::new(
                ErrorCode::Timeout,
                format!(
                    "no answer within {} ms{waiting}; a write may still be applied",
                    self.timeout_ms
                ),
            )));
        }
        self.arm_deadline_timer();
    }

    fn fail_pending(&self, error: &Error) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, p) in pending {
            p.reply.settle(Err(error.clone()));
        }
    }

    async fn close(self: &Rc<Self>) {
        if self.closed.replace(true) {
            return;
        }
        self.post_router(&ToRouter::Bye {
            client: self.client,
        });
        if self.is_leader.get() {
            self.close_worker_db().await;
            self.set_leader(false);
        }
        self.release_leader_lock();
        if let Some(held) = self.tab_lock.borrow_mut().take() {
            held.release();
        }
        if let Some(held) = self.router_watch.borrow_mut().take() {
            held.release();
        }
        self.worker.terminate();
        if let Some(router) = self.router.borrow_mut().take() {
            router.close();
        }
        if let Some((requests, replies)) = &self.fallback {
            requests.close();
            replies.close();
        }
        self.changes.close();
        if let Some(link) = self.link.borrow_mut().take() {
            link.port.close();
        }
        self.fail_pending(&Error::new(
            ErrorCode::Closed,
            "the database was closed before the request completed",
        ));
        if let Some(tx) = self.connected.borrow_mut().take() {
            let _ = tx.send(Err(Error::new(ErrorCode::Closed, "closed while opening")));
        }
        self.subscribers.borrow_mut().clear();
        self.leader_listeners.borrow_mut().clear();
        self.handlers.borrow_mut().clear();
        self.router_handler.borrow_mut().take();
    }
}

/// A promise of the JS API and the waiter that settles it. Without a waiter
/// (the executor did not run) the promise is already rejected.
fn js_promise(answer: fn(Reply) -> Result<JsValue, Error>) -> (Promise, Option<Waiter>) {
    let mut waiter = None;
    let promise = Promise::new(&mut |resolve, reject| {
        waiter = Some(Waiter::Promise {
            resolve,
            reject,
            answer,
        });
    });
    // The executor runs at once, inside Promise::new; were it ever not to,
    // the caller gets a rejection rather than a promise that never settles.
    if waiter.is_none() {
        let error = to_js_error(&Error::internal("the promise executor did not run"));
        return (Promise::reject(&error), None);
    }
    (promise, waiter)
}

fn unexpected(reply: Reply) -> Error {
    Error::internal(format!("unexpected reply {}", reply.kind()))
}

fn query_request(sql: &JsValue, params: &JsValue, tx: Option<TxId>) -> Result<Request, Error> {
    Ok(Request::Query {
        sql: to_sql(sql)?,
        params: to_params(params)?,
        tx,
    })
}

fn run_request(sql: &JsValue, params: &JsValue, tx: Option<TxId>) -> Result<Request, Error> {
    Ok(Request::Run {
        sql: to_sql(sql)?,
        params: to_params(params)?,
        tx,
    })
}

fn exec_request(sql: &JsValue, tx: Option<TxId>) -> Result<Request, Error> {
    Ok(Request::Exec {
        sql: to_sql(sql)?,
        tx,
    })
}

/// Rows as objects keyed by column name (`query`).
fn objects_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Rows(rows) => Ok(rows_to_objects(&rows).into()),
        other => Err(unexpected(other)),
    }
}

/// `{ columns, rows }` with each row an array (`queryRaw`).
fn raw_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Rows(rows) => Ok(rows_to_raw(&rows).into()),
        other => Err(unexpected(other)),
    }
}

/// `{ changes, lastInsertRowid }` (`run`).
fn run_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Run(r) => Ok(run_result(&r)),
        other => Err(unexpected(other)),
    }
}

/// Nothing (`exec`).
fn done_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Done => Ok(JsValue::UNDEFINED),
        other => Err(unexpected(other)),
    }
}

/// One run result per statement (`batch`).
fn batch_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Batch(results) => Ok(run_results(&results).into()),
        other => Err(unexpected(other)),
    }
}

/// Table names (`tables`).
fn tables_answer(reply: Reply) -> Result<JsValue, Error> {
    match reply {
        Reply::Tables(tables) => Ok(tables
            .iter()
            .map(|t| JsValue::from_str(t))
            .collect::<Array>()
            .into()),
        other => Err(unexpected(other)),
    }
}

/// Opens a database: spawns the tab's worker, joins the router and the
/// leader election, and resolves once requests can be served. Called by
/// `open()` in `index.js`, which supplies the script URLs.
#[wasm_bindgen(js_name = openDatabase)]
pub async fn open_database(name: JsValue, options: JsValue) -> Result<Database, JsValue> {
    open_inner(name, options)
        .await
        .map(|inner| Database { inner })
        .map_err(|e| to_js_error(&e))
}

/// Where a worker comes from: a script URL, or a JS function that takes the
/// worker's name and returns the started worker. Bundlers (Vite, webpack,
/// Parcel) only bundle a worker script written as
/// `new Worker(new URL('…', import.meta.url))` in JavaScript, so `index.js`
/// passes such functions by default.
enum Spawn {
    Url(String),
    Factory(Function),
}

impl Spawn {
    /// `options[factory_key]` when it is a function, else `options[url_key]`.
    fn from_options(options: &JsValue, factory_key: &str, url_key: &str) -> Option<Spawn> {
        Reflect::get(options, &factory_key.into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .map(Spawn::Factory)
            .or_else(|| option_str(options, url_key).map(Spawn::Url))
    }

    /// Says where the worker comes from, for error messages.
    fn origin(&self, factory_key: &str) -> String {
        match self {
            Spawn::Url(url) => url.clone(),
            Spawn::Factory(_) => format!("options.{factory_key}"),
        }
    }

    /// Calls the factory with the worker's `name`; the result must be a `T`.
    fn call<T: JsCast>(f: &Function, name: &str, what: &str) -> Result<T, JsValue> {
        f.call1(&JsValue::UNDEFINED, &JsValue::from_str(name))?
            .dyn_into::<T>()
            .map_err(|_| JsValue::from_str(&format!("it did not return a {what}")))
    }
}

/// Options of a module worker (the entry scripts use `import`) named `name`.
fn module_options(name: &str) -> WorkerOptions {
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    options.set_name(name);
    options
}

/// Starts this tab's dedicated database worker for database `name`.
fn start_worker(source: &Spawn, name: &str) -> Result<Worker, Error> {
    let worker_name = format!("sqlite-tabs {name}");
    let worker = match source {
        Spawn::Url(url) => Worker::new_with_options(url, &module_options(&worker_name)),
        Spawn::Factory(f) => Spawn::call::<Worker>(f, &worker_name, "Worker"),
    };
    worker.map_err(worker_failed(format!(
        "could not start the database worker from {}",
        source.origin("createWorker")
    )))
}

/// Connects to the router SharedWorker of database `name`. Every tab must
/// reach the same one, which the browser picks by script URL and name.
fn start_router(source: &Spawn, name: &str) -> Result<MessagePort, Error> {
    let router_name = format!("sqlite-tabs:{name}");
    let shared = match source {
        Spawn::Url(url) => {
            SharedWorker::new_with_worker_options(url, &module_options(&router_name))
        }
        Spawn::Factory(f) => Spawn::call::<SharedWorker>(f, &router_name, "SharedWorker"),
    };
    shared
        .map(|shared| shared.port())
        .map_err(worker_failed(format!(
            "could not start the router from {}",
            source.origin("createSharedWorker")
        )))
}

/// The message of a worker's `error` event, or where it failed to load from.
fn worker_error_detail(event: &JsValue, url: &str) -> String {
    event
        .dyn_ref::<ErrorEvent>()
        .map(|e| e.message())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("it could not be loaded from {url}"))
}

/// `index.js` starts the default worker before this wasm loads, keeping the
/// worker's events that arrive before the handlers above are set; its
/// internal option `takeEarlyWorkerEvents()` hands them over, or gives `null`
/// when the worker is not one it started. They are handled here, in order,
/// before any later event, since events are dispatched as tasks. Returns
/// whether index.js started this worker (and so decided when it loads SQLite).
fn replay_early_worker_events(inner: &Rc<Inner>, options: &JsValue, source: &Spawn) -> bool {
    let Some(take) = Reflect::get(options, &"takeEarlyWorkerEvents".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    else {
        return false;
    };
    let events = match take.call0(&JsValue::UNDEFINED) {
        Ok(events) if events.is_null() || events.is_undefined() => return false,
        Ok(events) => Array::from(&events),
        Err(e) => {
            web_sys::console::error_2(&"sqlite-tabs: takeEarlyWorkerEvents failed".into(), &e);
            return false;
        }
    };
    for event in events.iter() {
        if let Some(message) = event.dyn_ref::<MessageEvent>() {
            inner.on_worker_message(message.data());
        } else {
            inner.on_worker_error(worker_error_detail(&event, &source.origin("createWorker")));
        }
    }
    true
}

/// A tab lock index.js requested before the wasm client loaded, so that it is
/// granted by the time the client joins the router.
struct HeadLock {
    client: ClientId,
    held: Held,
    granted: Promise,
}

/// Takes the tab lock index.js requested (internal option `takeTabLock()`,
/// giving `{ client, name, granted, release }` or null). One that does not
/// match what this client would have requested is released and not used.
fn take_head_lock(options: &JsValue, name: &str) -> Option<HeadLock> {
    let take = Reflect::get(options, &"takeTabLock".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()?;
    let lock = take.call0(&JsValue::UNDEFINED).ok()?;
    if !lock.is_object() {
        return None;
    }
    let get = |key: &str| Reflect::get(&lock, &key.into()).unwrap_or(JsValue::UNDEFINED);
    let release = get("release").dyn_into::<Function>().ok()?;
    let held = Held::from_release(release);
    // A client id is 53 random bits (random_client_id), exact in a JS number.
    let client = get("client")
        .as_f64()
        .filter(|n| n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(n))
        .map(|n| ClientId(n as u64));
    let granted = get("granted").dyn_into::<Promise>().ok();
    match (client, granted) {
        (Some(client), Some(granted))
            if get("name").as_string() == Some(names::tab_lock(name, client)) =>
        {
            Some(HeadLock {
                client,
                held,
                granted,
            })
        }
        _ => {
            held.release();
            None
        }
    }
}

fn worker_failed(what: String) -> impl FnOnce(JsValue) -> Error {
    move |e| Error::new(ErrorCode::WorkerFailed, format!("{what}: {e:?}"))
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
    let worker_source = Spawn::from_options(&options, "createWorker", "workerUrl")
        .ok_or_else(|| Error::bad_request("options.workerUrl must be the URL of db-worker.js"))?;
    // Chrome for Android has no SharedWorker: tabs then reach the leader's
    // worker over BroadcastChannel.
    let has_shared_worker = Reflect::get(&js_sys::global(), &"SharedWorker".into())
        .map(|v| v.is_function())
        .unwrap_or(false);
    let router_source = Spawn::from_options(&options, "createSharedWorker", "sharedWorkerUrl")
        .filter(|_| has_shared_worker);
    let timeout_ms = timeout_option(&options, "timeoutMs", DEFAULT_TIMEOUT_MS)?;
    let open_timeout_ms = timeout_option(&options, "openTimeoutMs", DEFAULT_OPEN_TIMEOUT_MS)?;
    let memory_fallback = option_bool(&options, "memoryFallback");

    let worker = start_worker(&worker_source, &name)?;
    let router = match &router_source {
        Some(source) => Some(start_router(source, &name)?),
        None => None,
    };
    let fallback = match router {
        Some(_) => None,
        None => Some((
            BroadcastChannel::new(&names::requests_channel(&name))
                .map_err(worker_failed("could not open the request channel".into()))?,
            BroadcastChannel::new(&names::replies_channel(&name))
                .map_err(worker_failed("could not open the reply channel".into()))?,
        )),
    };
    let changes = BroadcastChannel::new(&names::changes_channel(&name))
        .map_err(worker_failed("could not open the change channel".into()))?;

    // Taken after the last early return: from here on, closing releases it.
    let head_lock = take_head_lock(&options, &name);
    let client = head_lock
        .as_ref()
        .map_or_else(random_client_id, |lock| lock.client);
    let (head_granted, head_held) = head_lock.map(|lock| (lock.granted, lock.held)).unzip();
    let (connected_tx, connected_rx) = oneshot::channel();
    let inner = Rc::new(Inner {
        name: name.clone(),
        worker,
        router: RefCell::new(router),
        router_source,
        router_watch: RefCell::new(None),
        router_handler: RefCell::new(None),
        fallback,
        client,
        next_seq: Cell::new(0),
        pending: RefCell::new(BTreeMap::new()),
        deadline_timer: RefCell::new(None),
        link: RefCell::new(None),
        epoch: Cell::new(Epoch(0)),
        timeout_ms,
        memory_fallback,
        closed: Cell::new(false),
        storage: Cell::new(Storage::Opfs),
        is_leader: Cell::new(false),
        lead_epoch: Cell::new(None),
        leader_lock: RefCell::new(None),
        tab_lock: RefCell::new(head_held),
        worker_failed: Cell::new(false),
        worker_opened: RefCell::new(None),
        worker_closed: RefCell::new(None),
        connected: RefCell::new(Some(connected_tx)),
        subscribers: RefCell::new(Vec::new()),
        leader_listeners: RefCell::new(Vec::new()),
        next_listener: Cell::new(1),
        seen: RefCell::new(SeqTracker::default()),
        catching_up: Cell::new(false),
        changes,
        handlers: RefCell::new(Vec::new()),
    });

    // Handlers hold weak references: the Inner owns them, not the reverse.
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let on_worker = Handler::new(move |event: JsValue| {
        if let (Some(inner), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) {
            inner.on_worker_message(event.data());
        }
    });
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let url = worker_source.origin("createWorker");
    let on_error = Handler::new(move |event: JsValue| {
        if let Some(inner) = weak.upgrade() {
            inner.on_worker_error(worker_error_detail(&event, &url));
        }
    });
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let on_router = Handler::new(move |event: JsValue| {
        if let (Some(inner), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) {
            inner.on_router_message(event);
        }
    });
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let on_change = Handler::new(move |event: JsValue| {
        let Some(inner) = weak.upgrade() else { return };
        let Some(bytes) = event
            .dyn_ref::<MessageEvent>()
            .and_then(|e| bytes_of(&e.data()))
        else {
            return;
        };
        match decode::<FromWorker>(&bytes) {
            Ok(FromWorker::Changed(change)) => inner.on_change(change),
            Ok(FromWorker::ChangedAll(changes)) => {
                for change in changes {
                    inner.on_change(change);
                }
            }
            _ => {}
        }
    });
    inner
        .worker
        .set_onmessage(Some(on_worker.as_ref().unchecked_ref()));
    inner
        .worker
        .set_onerror(Some(on_error.as_ref().unchecked_ref()));
    if !replay_early_worker_events(&inner, &options, &worker_source) {
        // A worker index.js did not start (an app's workerUrl or
        // createWorker) loads SQLite on its first message (db-worker.js):
        // ask for it now, as every worker was loaded before that existed.
        if let Err(e) = inner.worker.post_message(&JsValue::NULL) {
            web_sys::console::warn_2(&"sqlite-tabs: could not start the worker".into(), &e);
        }
    }
    if let Some(router) = &*inner.router.borrow() {
        router.set_onmessage(Some(on_router.as_ref().unchecked_ref()));
    }
    let weak: Weak<Inner> = Rc::downgrade(&inner);
    let on_fallback = Handler::new(move |event: JsValue| {
        if let (Some(inner), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) {
            inner.on_fallback_message(event.data());
        }
    });
    if let Some((_, replies)) = &inner.fallback {
        replies.set_onmessage(Some(on_fallback.as_ref().unchecked_ref()));
    }
    inner
        .changes
        .set_onmessage(Some(on_change.as_ref().unchecked_ref()));
    inner
        .handlers
        .borrow_mut()
        .extend([on_worker, on_error, on_change, on_fallback]);
    *inner.router_handler.borrow_mut() = Some(on_router);

    let joined = async {
        // Joining the router does not need this tab's worker: a tab joining
        // a running leader does it while its worker still loads.
        // The router watches this lock to learn when the tab dies, so it must
        // be held before the router hears of the tab.
        let tab_lock = names::tab_lock(&name, inner.client);
        match head_granted {
            Some(granted) => {
                JsFuture::from(granted)
                    .await
                    .map_err(worker_failed("the tab's Web Lock was not granted".into()))?;
            }
            None => {
                let (granted_tx, granted_rx) = oneshot::channel();
                let held = locks::hold(&tab_lock, move || {
                    let _ = granted_tx.send(());
                })
                .map_err(worker_failed("Web Locks are unavailable".into()))?;
                *inner.tab_lock.borrow_mut() = Some(held);
                let _ = granted_rx.await;
            }
        }
        inner.post_router(&ToRouter::Hello {
            client: inner.client,
            tab_lock,
        });
        // Queues for leadership without waiting for this tab's worker to
        // load: a granted tab's Open waits in db-worker.js, so the first tab
        // opens the database as soon as the wasm runs. (After Hello, so the
        // router knows this tab before it hears LeaderReady from it.) A
        // worker that fails to load fails `connected` and any pending Open
        // (on_worker_error), and the tab never leads.
        inner.campaign();
        if inner.fallback.is_some() {
            // Makes a live leader announce itself to this tab (it answers
            // the first request of every tab it hears from).
            let probe = inner.clone();
            spawn_local(async move {
                let _ = probe.call(Request::ChangesSince { after: u64::MAX }).await;
            });
        }
        connected_rx
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorCode::Closed, "closed while opening")))
    };
    let result = match select(Box::pin(joined), TimeoutFuture::new(open_timeout_ms)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(Error::new(
            ErrorCode::Timeout,
            format!("opening \"{name}\" took longer than {open_timeout_ms} ms"),
        )),
    };
    match result {
        Ok(()) => {
            // A follower's worker has not loaded its wasm yet (see
            // ToWorker::Warm); it does once the tab has joined, in a task
            // after this one, so the code awaiting open() runs first.
            let weak = Rc::downgrade(&inner);
            spawn_local(async move {
                TimeoutFuture::new(0).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.is_leader.get() || inner.closed.get() {
                    return;
                }
                if let Err(e) = inner.post_worker(&ToWorker::Warm, None) {
                    web_sys::console::warn_1(&format!("sqlite-tabs: {e}").into());
                }
            });
            Ok(inner)
        }
        Err(e) => {
            inner.close().await;
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
        self.inner.promise(exec_request(&sql, None), done_answer)
    }

    /// Runs one statement; resolves to rows as objects keyed by column name.
    pub fn query(&self, sql: JsValue, params: JsValue) -> Promise {
        self.inner
            .promise(query_request(&sql, &params, None), objects_answer)
    }

    /// Runs one statement; resolves to `{ columns, rows }` with rows as arrays.
    #[wasm_bindgen(js_name = queryRaw)]
    pub fn query_raw(&self, sql: JsValue, params: JsValue) -> Promise {
        self.inner
            .promise(query_request(&sql, &params, None), raw_answer)
    }

    /// Runs one statement; resolves to `{ changes, lastInsertRowid }`.
    pub fn run(&self, sql: JsValue, params: JsValue) -> Promise {
        self.inner
            .promise(run_request(&sql, &params, None), run_answer)
    }

    /// Runs several statements atomically; resolves to one run result each.
    /// More than [`BATCH_PART`] statements go out in parts as they are packed
    /// (one transaction all the same).
    pub fn batch(&self, statements: JsValue) -> Promise {
        self.inner.batch(&statements)
    }

    /// The tables a statement reads, as SQLite reports them (for live queries).
    pub fn tables(&self, sql: JsValue) -> Promise {
        let request = to_sql(&sql).map(|sql| Request::Tables { sql });
        self.inner.promise(request, tables_answer)
    }

    /// Runs `fn(tx)` inside a transaction: commits when its promise resolves,
    /// rolls back when it rejects (and rejects with the same reason).
    pub fn transaction(&self, f: JsValue) -> Promise {
        let inner = self.inner.clone();
        let Some(f) = f.dyn_ref::<Function>().cloned() else {
            return Promise::reject(&to_js_error(&Error::bad_request(
                "transaction() takes a function (tx) => Promise",
            )));
        };
        // Sent now, like every other call, so that requests keep the order
        // they were made in.
        let begin = inner.start(Request::Begin);
        future_to_promise(async move {
            let tx = match begin.await {
                Ok(Reply::Began(tx)) => tx,
                Ok(other) => return Err(to_js_error(&unexpected(other))),
                Err(e) => return Err(to_js_error(&e)),
            };
            let epoch = inner.epoch.get();
            let active = Rc::new(Cell::new(true));
            let handle = Transaction {
                inner: inner.clone(),
                tx,
                epoch,
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
                    // Re-sent to a new leader that has no record of it: the
                    // transaction died with the old one.
                    Err(e) if e.code == ErrorCode::BadRequest && inner.epoch.get() != epoch => {
                        Err(to_js_error(&leader_lost("the transaction was rolled back")))
                    }
                    Err(e) => Err(to_js_error(&e)),
                },
                Err(reason) => {
                    // The caller wants to see why its function failed; a
                    // failing rollback (e.g. leader gone) adds nothing.
                    if inner.epoch.get() == epoch {
                        let _ = inner.call(Request::Rollback { tx }).await;
                    }
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
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id + 1);
        self.inner.subscribers.borrow_mut().push(Subscriber {
            id,
            tables,
            target: Target::Callback(callback),
        });
        Ok(id)
    }

    /// A live query: calls `callback(rows)` now and whenever a table the
    /// statement reads (as SQLite's authorizer reports) changes and the rows
    /// differ. Returns an id for [`Database::unsubscribe`].
    pub fn watch(&self, sql: JsValue, params: JsValue, callback: JsValue) -> Result<u32, JsValue> {
        let bad = |e: Error| to_js_error(&e);
        let sql = to_sql(&sql).map_err(bad)?;
        let params = to_params(&params).map_err(bad)?;
        let callback = callback
            .dyn_into::<Function>()
            .map_err(|_| bad(Error::bad_request("watch() needs a callback function")))?;
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id + 1);
        let watch = Rc::new(Watch {
            sql,
            params,
            callback,
            running: Cell::new(false),
            dirty: Cell::new(false),
            stopped: Cell::new(false),
            last: RefCell::new(None),
        });
        // Registered at once (matching no table yet) so unsubscribe() works
        // even before the statement's tables are known.
        self.inner.subscribers.borrow_mut().push(Subscriber {
            id,
            tables: Some(Vec::new()),
            target: Target::Watch(watch.clone()),
        });
        let inner = self.inner.clone();
        spawn_local(async move {
            let tables = match inner
                .call(Request::Tables {
                    sql: watch.sql.clone(),
                })
                .await
            {
                Ok(Reply::Tables(tables)) => tables,
                Ok(other) => {
                    web_sys::console::error_1(&unexpected(other).to_string().into());
                    return;
                }
                Err(e) => {
                    web_sys::console::error_1(&format!("sqlite-tabs: watch(): {e}").into());
                    return;
                }
            };
            if watch.stopped.get() {
                return;
            }
            if let Some(s) = inner
                .subscribers
                .borrow_mut()
                .iter_mut()
                .find(|s| s.id == id)
            {
                s.tables = Some(tables);
            }
            inner.rerun(watch);
        });
        Ok(id)
    }

    /// Removes a subscription made by [`Database::subscribe`] or
    /// [`Database::watch`].
    pub fn unsubscribe(&self, id: u32) {
        let mut subscribers = self.inner.subscribers.borrow_mut();
        for s in subscribers.iter().filter(|s| s.id == id) {
            if let Target::Watch(w) = &s.target {
                w.stopped.set(true);
            }
        }
        subscribers.retain(|s| s.id != id);
    }

    /// Registers `callback(isLeader, epoch)`, called whenever the leader changes;
    /// returns an id for [`Database::remove_leader_listener`].
    #[wasm_bindgen(js_name = addLeaderListener)]
    pub fn add_leader_listener(&self, callback: JsValue) -> Result<u32, JsValue> {
        let callback = callback.dyn_into::<Function>().map_err(|_| {
            to_js_error(&Error::bad_request(
                "onLeaderChange() needs a callback function",
            ))
        })?;
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id + 1);
        self.inner
            .leader_listeners
            .borrow_mut()
            .push((id, callback));
        Ok(id)
    }

    /// Removes a listener added by [`Database::add_leader_listener`].
    #[wasm_bindgen(js_name = removeLeaderListener)]
    pub fn remove_leader_listener(&self, id: u32) {
        self.inner
            .leader_listeners
            .borrow_mut()
            .retain(|(i, _)| *i != id);
    }

    /// Whether this tab owns the database now.
    #[wasm_bindgen(getter, js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.inner.is_leader.get()
    }

    /// The leader term this tab is connected to.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> f64 {
        self.inner.epoch.get().0 as f64
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
        self.inner.seen.borrow().latest() as f64
    }

    /// Gives up leadership (if this tab leads): another tab takes over and
    /// this one queues behind it.
    #[wasm_bindgen(js_name = stepDown)]
    pub fn step_down(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.step_down().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Closes the database in this tab: pending requests reject with
    /// `CLOSED`; if this tab led, another takes over. Safe to call twice.
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
    epoch: Epoch,
    active: Rc<Cell<bool>>,
}

impl Transaction {
    fn check(&self) -> Result<(), Error> {
        if !self.active.get() {
            return Err(Error::bad_request(
                "this transaction has ended; use the tx object only inside its transaction() callback",
            ));
        }
        if self.inner.epoch.get() != self.epoch {
            return Err(leader_lost("the transaction was rolled back"));
        }
        Ok(())
    }
}

#[wasm_bindgen]
impl Transaction {
    /// `exec` inside the transaction.
    pub fn exec(&self, sql: JsValue) -> Promise {
        let request = self
            .check()
            .and_then(|()| exec_request(&sql, Some(self.tx)));
        self.inner.promise(request, done_answer)
    }

    /// `query` inside the transaction.
    pub fn query(&self, sql: JsValue, params: JsValue) -> Promise {
        let request = self
            .check()
            .and_then(|()| query_request(&sql, &params, Some(self.tx)));
        self.inner.promise(request, objects_answer)
    }

    /// `queryRaw` inside the transaction.
    #[wasm_bindgen(js_name = queryRaw)]
    pub fn query_raw(&self, sql: JsValue, params: JsValue) -> Promise {
        let request = self
            .check()
            .and_then(|()| query_request(&sql, &params, Some(self.tx)));
        self.inner.promise(request, raw_answer)
    }

    /// `run` inside the transaction.
    pub fn run(&self, sql: JsValue, params: JsValue) -> Promise {
        let request = self
            .check()
            .and_then(|()| run_request(&sql, &params, Some(self.tx)));
        self.inner.promise(request, run_answer)
    }
}
