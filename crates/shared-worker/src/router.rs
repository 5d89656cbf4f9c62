//! The wasm glue of the router: ports in, actions of the registry out.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, ArrayBuffer, Function, Uint8Array};
use sqlite_tabs_protocol::{decode, encode, ClientId, Epoch, FromRouter, ToRouter};
use wasm_bindgen::prelude::*;
use web_sys::{MessageChannel, MessageEvent, MessagePort, SharedWorkerGlobalScope};

use crate::registry::{Action, Registry};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, callback)`.
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request)]
    fn request_lock(name: &str, callback: &Function) -> js_sys::Promise;
}

type Handler = Closure<dyn FnMut(MessageEvent)>;

struct Tab {
    port: MessagePort,
    _handler: Handler,
}

/// The router: tabs connect their ports to it.
#[derive(Default)]
pub struct Router {
    /// Connections wait until the router holds its lock (see `start`).
    waiting: RefCell<Option<Vec<MessagePort>>>,
    registry: RefCell<Registry>,
    tabs: RefCell<HashMap<ClientId, Tab>>,
    // Ports that connected but have not said Hello yet.
    unnamed: RefCell<Vec<(MessagePort, Handler)>>,
    /// The current leader's link to its worker (sent with LeaderReady):
    /// Attach and Gone go there rather than through the leader tab's main
    /// thread, which may be busy for a long while (a page's own work).
    leader_link: RefCell<Option<LeaderLink>>,
}

/// A port to the leader's worker, for the leader `client` of `epoch`.
struct LeaderLink {
    client: ClientId,
    epoch: Epoch,
    port: MessagePort,
}

fn post(port: &MessagePort, message: &FromRouter, extra: Option<&MessagePort>) {
    let bytes = encode(message);
    let array = Uint8Array::new_with_length(bytes.len() as u32);
    array.copy_from(&bytes);
    let buffer = array.buffer();
    let transfer = Array::of1(&buffer);
    if let Some(p) = extra {
        transfer.push(p);
    }
    if let Err(e) = port.post_message_with_transferable(&buffer, &transfer) {
        web_sys::console::error_2(&"sqlite-tabs router: postMessage failed".into(), &e);
    }
}

impl Router {
    fn on_message(self: &Rc<Self>, port: &MessagePort, event: &MessageEvent) {
        let data = event.data();
        let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
            return;
        };
        let message = match decode::<ToRouter>(&Uint8Array::new(buffer).to_vec()) {
            Ok(m) => m,
            Err(e) => {
                web_sys::console::warn_1(&format!("sqlite-tabs router: {e}").into());
                return;
            }
        };
        let actions = match message {
            ToRouter::Hello { client, tab_lock } => {
                self.name_port(client, port);
                post(port, &FromRouter::Welcome, None);
                self.registry.borrow_mut().hello(client, tab_lock)
            }
            ToRouter::LeaderReady { client, epoch } => {
                let actions = self.registry.borrow_mut().leader_ready(client, epoch);
                let link = event.ports().get(0).dyn_into::<MessagePort>().ok();
                self.set_leader_link(client, epoch, link);
                actions
            }
            ToRouter::Bye { client } => self.forget(client),
        };
        self.run(actions);
    }

    /// Moves a port from the unnamed list to its client.
    fn name_port(&self, client: ClientId, port: &MessagePort) {
        let mut unnamed = self.unnamed.borrow_mut();
        if let Some(i) = unnamed.iter().position(|(p, _)| p == port) {
            let (port, handler) = unnamed.swap_remove(i);
            self.tabs.borrow_mut().insert(
                client,
                Tab {
                    port,
                    _handler: handler,
                },
            );
        }
    }

    /// Keeps `link`, the port to the worker of the leader that just said
    /// LeaderReady, if the registry took that tab as the leader of `epoch`;
    /// an earlier leader's link is closed either way once it is replaced.
    fn set_leader_link(&self, client: ClientId, epoch: Epoch, link: Option<MessagePort>) {
        let leads = self.registry.borrow().leader() == Some((client, epoch));
        if !leads {
            if let Some(port) = link {
                port.close();
            }
            return;
        }
        let new = link.map(|port| LeaderLink {
            client,
            epoch,
            port,
        });
        if let Some(old) = std::mem::replace(&mut *self.leader_link.borrow_mut(), new) {
            old.port.close();
        }
    }

    /// Where a message for the worker of `leader` goes: its link when the
    /// router has one for that leader and epoch, else the leader's tab.
    fn leader_port(&self, leader: ClientId, epoch: Option<Epoch>) -> Option<MessagePort> {
        if let Some(link) = &*self.leader_link.borrow() {
            if link.client == leader && epoch.is_none_or(|e| e == link.epoch) {
                return Some(link.port.clone());
            }
        }
        self.tabs.borrow().get(&leader).map(|tab| tab.port.clone())
    }

    fn forget(&self, client: ClientId) -> Vec<Action> {
        if let Some(tab) = self.tabs.borrow_mut().remove(&client) {
            tab.port.close();
        }
        let linked = matches!(&*self.leader_link.borrow(), Some(link) if link.client == client);
        if linked {
            if let Some(link) = self.leader_link.borrow_mut().take() {
                link.port.close();
            }
        }
        self.registry.borrow_mut().gone(client)
    }

    fn run(self: &Rc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::WatchTab { client, tab_lock } => {
                    let weak: Weak<Router> = Rc::downgrade(self);
                    // Granted only once the tab has died and its lock is free;
                    // returning at once releases it again.
                    let callback = Closure::once_into_js(move |_lock: JsValue| {
                        if let Some(router) = weak.upgrade() {
                            let actions = router.forget(client);
                            router.run(actions);
                        }
                    });
                    let _ = request_lock(&tab_lock, callback.unchecked_ref());
                }
                Action::Broker {
                    epoch,
                    leader,
                    client,
                } => {
                    let Some(leader_port) = self.leader_port(leader, Some(epoch)) else {
                        continue;
                    };
                    let tabs = self.tabs.borrow();
                    let Some(client_tab) = tabs.get(&client) else {
                        continue;
                    };
                    let Ok(channel) = MessageChannel::new() else {
                        continue;
                    };
                    post(
                        &leader_port,
                        &FromRouter::Attach { epoch, client },
                        Some(&channel.port2()),
                    );
                    post(
                        &client_tab.port,
                        &FromRouter::Connect { epoch, leader },
                        Some(&channel.port1()),
                    );
                }
                Action::Send {
                    to,
                    message: message @ FromRouter::Gone { .. },
                } => {
                    if let Some(port) = self.leader_port(to, None) {
                        post(&port, &message, None);
                    }
                }
                Action::Send { to, message } => {
                    if let Some(tab) = self.tabs.borrow().get(&to) {
                        post(&tab.port, &message, None);
                    }
                }
            }
        }
    }

    /// A new router with no tabs.
    pub fn new() -> Rc<Router> {
        Rc::new(Router::default())
    }

    /// A router that holds connections until [`Router::lock_held`].
    fn waiting() -> Rc<Router> {
        let router = Router::new();
        *router.waiting.borrow_mut() = Some(Vec::new());
        router
    }

    /// The router's lock is held: serve the connections that waited.
    fn lock_held(self: &Rc<Self>) {
        let waiting = self.waiting.borrow_mut().take().unwrap_or_default();
        for port in waiting {
            self.on_connect(port);
        }
    }

    /// A tab connected through `port` (the SharedWorker `connect` event's).
    pub fn on_connect(self: &Rc<Self>, port: MessagePort) {
        if let Some(waiting) = &mut *self.waiting.borrow_mut() {
            waiting.push(port);
            return;
        }
        let weak: Weak<Router> = Rc::downgrade(self);
        let reply_port = port.clone();
        let handler = Handler::new(move |event: MessageEvent| {
            if let Some(router) = weak.upgrade() {
                router.on_message(&reply_port, &event);
            }
        });
        port.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        self.unnamed.borrow_mut().push((port, handler));
    }
}

thread_local! {
    static CONNECT: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// Entry point called once by `shared-worker.js` after the module loads,
/// with the `connect` events that arrived while it was loading.
#[wasm_bindgen]
pub fn start(early: Array) {
    let scope: SharedWorkerGlobalScope = js_sys::global().unchecked_into();
    let router = Router::waiting();
    // Held for the router's whole life: when its renderer crashes the lock
    // frees, and tabs waiting on it know to start a new router. Tabs are only
    // served once it is held, so none can mistake a starting router for a
    // dead one.
    let weak = Rc::downgrade(&router);
    let on_lock = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        if let Some(router) = weak.upgrade() {
            router.lock_held();
        }
        // Never settles: the lock is released only when this worker ends.
        js_sys::Promise::new(&mut |_, _| {}).into()
    });
    // Tabs name this SharedWorker `sqlite-tabs:<database>`, which makes this
    // `names::router_lock(<database>)`, the lock tabs watch.
    let _ = request_lock(&format!("{}:router", scope.name()), on_lock.unchecked_ref());
    for event in early.iter() {
        if let Some(event) = event.dyn_ref::<MessageEvent>() {
            if let Ok(port) = event.ports().get(0).dyn_into::<MessagePort>() {
                router.on_connect(port);
            }
        }
    }
    let on_connect = Handler::new(move |event: MessageEvent| {
        if let Ok(port) = event.ports().get(0).dyn_into::<MessagePort>() {
            router.on_connect(port);
        }
    });
    scope.set_onconnect(Some(on_connect.as_ref().unchecked_ref()));
    // Lives as long as the SharedWorker.
    CONNECT.with(|c| *c.borrow_mut() = Some(on_connect));
}
