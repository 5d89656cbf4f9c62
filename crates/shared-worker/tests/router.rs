//! The router's glue inside a real SharedWorker: real MessagePorts, real
//! Web Locks. Each "tab" is the far end of a MessageChannel.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Promise, Uint8Array};
use sqlite_tabs_protocol::{decode, encode, ClientId, Epoch, FromRouter, ToRouter};
use sqlite_tabs_shared_worker::Router;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{MessageChannel, MessageEvent, MessagePort};

wasm_bindgen_test_configure!(run_in_shared_worker);

#[wasm_bindgen(inline_js = "
export function inbox(port) {
  const queue = [];
  const waiters = [];
  port.onmessage = (e) => {
    const w = waiters.shift();
    if (w) w(e); else queue.push(e);
  };
  return {
    next(ms) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        waiters.push(resolve);
        setTimeout(() => reject(new Error('no message within ' + ms + ' ms')), ms);
      });
    },
  };
}
export function hold(name) {
  let release;
  const held = new Promise((r) => (release = r));
  const granted = new Promise((g) => navigator.locks.request(name, () => { g(); return held; }));
  return { granted, release: () => release() };
}
")]
extern "C" {
    type Inbox;
    fn inbox(port: &MessagePort) -> Inbox;
    #[wasm_bindgen(method)]
    fn next(this: &Inbox, ms: u32) -> Promise;

    type Held;
    fn hold(name: &str) -> Held;
    #[wasm_bindgen(method, getter)]
    fn granted(this: &Held) -> Promise;
    #[wasm_bindgen(method)]
    fn release(this: &Held);
}

/// A simulated tab: its end of the router connection.
struct Tab {
    client: ClientId,
    port: MessagePort,
    inbox: Inbox,
    lock: Held,
}

impl Tab {
    async fn join(router: &std::rc::Rc<Router>, n: u64) -> Tab {
        let channel = MessageChannel::new().unwrap();
        router.on_connect(channel.port1());
        let port = channel.port2();
        let inbox = inbox(&port);
        let client = ClientId(n);
        let lock_name = format!("test-router:{}:tab:{n}", js_sys::Date::now());
        let lock = hold(&lock_name);
        JsFuture::from(lock.granted()).await.unwrap();
        let tab = Tab {
            client,
            port,
            inbox,
            lock,
        };
        tab.send(&ToRouter::Hello {
            client,
            tab_lock: lock_name,
        });
        assert_eq!(tab.recv().await.0, FromRouter::Welcome);
        tab
    }

    fn send(&self, message: &ToRouter) {
        self.post(message, None);
    }

    /// Sends `message` with `port` transferred along.
    /// Claims leadership for `epoch` as a leading tab does, with a link to
    /// its worker: returns the worker's end of that link.
    fn lead_with_link(&self, epoch: Epoch) -> Inbox {
        let link = MessageChannel::new().unwrap();
        let worker = inbox(&link.port1());
        self.post(
            &ToRouter::LeaderReady {
                client: self.client,
                epoch,
            },
            Some(&link.port2()),
        );
        worker
    }

    fn post(&self, message: &ToRouter, port: Option<&MessagePort>) {
        let bytes = Uint8Array::from(encode(message).as_slice());
        let transfer = Array::of1(&bytes.buffer());
        if let Some(port) = port {
            transfer.push(port);
        }
        self.port
            .post_message_with_transferable(&bytes.buffer(), &transfer)
            .unwrap();
    }

    /// The next message, with the port it carries if any.
    async fn recv(&self) -> (FromRouter, Option<MessagePort>) {
        recv_on(&self.inbox).await
    }
}

#[wasm_bindgen_test]
async fn brokers_direct_ports_and_fails_over_when_the_leader_dies() {
    let router = Router::new();
    let a = Tab::join(&router, 1).await;
    let b = Tab::join(&router, 2).await;

    // A leads: A's tab gets a port for each client (itself included), each
    // client a port to A's worker.
    a.send(&ToRouter::LeaderReady {
        client: a.client,
        epoch: Epoch(1),
    });
    let mut attach_for_b = None;
    let mut connect_a = None;
    for _ in 0..3 {
        match a.recv().await {
            (
                FromRouter::Attach {
                    epoch: Epoch(1),
                    client,
                },
                Some(port),
            ) if client == b.client => attach_for_b = Some(port),
            (
                FromRouter::Attach {
                    epoch: Epoch(1),
                    client,
                },
                Some(_),
            ) if client == a.client => {}
            (
                FromRouter::Connect {
                    epoch: Epoch(1),
                    leader,
                },
                Some(port),
            ) if leader == a.client => connect_a = Some(port),
            other => panic!("unexpected {:?}", other.0),
        }
    }
    assert!(connect_a.is_some());
    let (message, b_to_leader) = b.recv().await;
    assert_eq!(
        message,
        FromRouter::Connect {
            epoch: Epoch(1),
            leader: a.client
        }
    );

    // The brokered channel connects B directly to A's side.
    let leader_side = inbox(&attach_for_b.unwrap());
    b_to_leader
        .unwrap()
        .post_message(&JsValue::from_str("hello leader"))
        .unwrap();
    let got: MessageEvent = JsFuture::from(leader_side.next(5000))
        .await
        .unwrap()
        .unchecked_into();
    assert_eq!(got.data().as_string().as_deref(), Some("hello leader"));

    // A stale claim changes nothing; a third tab joining is connected at once.
    b.send(&ToRouter::LeaderReady {
        client: b.client,
        epoch: Epoch(1),
    });
    let c = Tab::join(&router, 3).await;
    assert!(matches!(
        c.recv().await,
        (
            FromRouter::Connect {
                epoch: Epoch(1),
                ..
            },
            Some(_)
        )
    ));
    assert!(matches!(
        a.recv().await,
        (
            FromRouter::Attach {
                client: ClientId(3),
                ..
            },
            Some(_)
        )
    ));

    // A dies: its tab lock is released, the router notices through Web Locks.
    a.lock.release();
    assert_eq!(b.recv().await.0, FromRouter::LeaderLost { epoch: Epoch(1) });
    assert_eq!(c.recv().await.0, FromRouter::LeaderLost { epoch: Epoch(1) });

    // B takes over in epoch 2.
    b.send(&ToRouter::LeaderReady {
        client: b.client,
        epoch: Epoch(2),
    });
    assert!(matches!(
        c.recv().await,
        (
            FromRouter::Connect {
                epoch: Epoch(2),
                leader: ClientId(2)
            },
            Some(_)
        )
    ));

    // C leaves politely: the leader hears it (to roll back C's transaction).
    c.send(&ToRouter::Bye { client: c.client });
    let mut saw_gone = false;
    for _ in 0..4 {
        if let (FromRouter::Gone { client }, _) = b.recv().await {
            assert_eq!(client, c.client);
            saw_gone = true;
            break;
        }
    }
    assert!(saw_gone, "the leader is told that C left");
    b.lock.release();
    c.lock.release();
}

/// The next message from the router on `inbox` (a tab's connection, or a
/// worker's end of its router link), with the port it carries if any.
async fn recv_on(inbox: &Inbox) -> (FromRouter, Option<MessagePort>) {
    let event: MessageEvent = JsFuture::from(inbox.next(5000))
        .await
        .expect("a message from the router")
        .unchecked_into();
    let bytes = Uint8Array::new(&event.data()).to_vec();
    let port = event.ports().get(0).dyn_into::<MessagePort>().ok();
    (decode(&bytes).unwrap(), port)
}

/// The clients the next `n` Attach messages on `link` are for (each with its port).
async fn attached_on(link: &Inbox, n: usize) -> Vec<ClientId> {
    let mut clients = Vec::new();
    for _ in 0..n {
        match recv_on(link).await {
            (FromRouter::Attach { client, .. }, Some(_)) => clients.push(client),
            other => panic!("expected Attach with a port, got {:?}", other.0),
        }
    }
    clients.sort();
    clients
}

#[wasm_bindgen_test]
async fn a_leader_link_takes_attach_and_gone_off_the_leader_tab() {
    let router = Router::new();
    let a = Tab::join(&router, 1).await;
    let b = Tab::join(&router, 2).await;

    // A leads with a link to its worker: the Attach messages go there, the
    // tab itself only hears Connect.
    let a_worker = a.lead_with_link(Epoch(1));
    assert_eq!(attached_on(&a_worker, 2).await, vec![a.client, b.client]);
    assert!(matches!(
        a.recv().await,
        (FromRouter::Connect { epoch: Epoch(1), leader }, Some(_)) if leader == a.client
    ));
    assert!(matches!(
        b.recv().await,
        (FromRouter::Connect { epoch: Epoch(1), leader }, Some(_)) if leader == a.client
    ));

    // A stale claim's link is not used: a tab joining is attached on A's.
    let stale_worker = b.lead_with_link(Epoch(1));
    let c = Tab::join(&router, 3).await;
    assert_eq!(attached_on(&a_worker, 1).await, vec![c.client]);

    // A tab leaving is reported on the link too.
    c.send(&ToRouter::Bye { client: c.client });
    assert_eq!(
        recv_on(&a_worker).await.0,
        FromRouter::Gone { client: c.client }
    );
    // Nothing of this reached A's tab: the next thing it hears is the
    // answer to a Hello sent now (the router's messages to a port keep
    // their order).
    a.send(&ToRouter::Hello {
        client: a.client,
        tab_lock: "unused: A is registered already".into(),
    });
    assert_eq!(a.recv().await.0, FromRouter::Welcome);
    assert!(
        JsFuture::from(stale_worker.next(50)).await.is_err(),
        "the stale claim's link got a message"
    );

    // A dies; B leads in epoch 2 with its own link, where tabs now attach.
    a.lock.release();
    assert_eq!(b.recv().await.0, FromRouter::LeaderLost { epoch: Epoch(1) });
    let b_worker = b.lead_with_link(Epoch(2));
    assert_eq!(attached_on(&b_worker, 1).await, vec![b.client]);
    b.lock.release();
}
