//! The router's registry of tabs and leader, as a plain state machine: each
//! event returns the actions the SharedWorker glue must carry out.

use std::collections::BTreeMap;

use sqlite_tabs_protocol::{ClientId, Epoch, FromRouter};

/// What the glue must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Request the tab's Web Lock: it is granted when the tab dies.
    WatchTab {
        /// The tab.
        client: ClientId,
        /// The lock it holds while alive.
        tab_lock: String,
    },
    /// Create a `MessageChannel`; send one end to `client` with
    /// [`FromRouter::Connect`] and the other to `leader` with
    /// [`FromRouter::Attach`].
    Broker {
        /// The leader term.
        epoch: Epoch,
        /// The leader tab.
        leader: ClientId,
        /// The tab to connect.
        client: ClientId,
    },
    /// Send a message to a tab.
    Send {
        /// The tab.
        to: ClientId,
        /// The message.
        message: FromRouter,
    },
}

/// Tabs connected to the router and the current leader.
#[derive(Debug, Default)]
pub struct Registry {
    tabs: BTreeMap<ClientId, String>,
    leader: Option<(ClientId, Epoch)>,
    highest: Epoch,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The current leader and its epoch.
    pub fn leader(&self) -> Option<(ClientId, Epoch)> {
        self.leader
    }

    /// Number of live tabs.
    pub fn len(&self) -> usize {
        self.tabs.len()
    }

    /// Whether no tab is connected.
    pub fn is_empty(&self) -> bool {
        self.tabs.is_empty()
    }

    /// A tab connected.
    pub fn hello(&mut self, client: ClientId, tab_lock: String) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.tabs.insert(client, tab_lock.clone()).is_none() {
            actions.push(Action::WatchTab { client, tab_lock });
        }
        if let Some((leader, epoch)) = self.leader {
            actions.push(Action::Broker {
                epoch,
                leader,
                client,
            });
        }
        actions
    }

    /// A tab says it leads in `epoch`. Ignored unless the epoch is newer than
    /// every epoch seen: an old leader's late message must not win over the
    /// new leader.
    pub fn leader_ready(&mut self, client: ClientId, epoch: Epoch) -> Vec<Action> {
        if !self.tabs.contains_key(&client) || epoch <= self.highest {
            return Vec::new();
        }
        self.highest = epoch;
        self.leader = Some((client, epoch));
        self.tabs
            .keys()
            .map(|&tab| Action::Broker {
                epoch,
                leader: client,
                client: tab,
            })
            .collect()
    }

    /// A tab left or died.
    pub fn gone(&mut self, client: ClientId) -> Vec<Action> {
        if self.tabs.remove(&client).is_none() {
            return Vec::new();
        }
        match self.leader {
            Some((leader, epoch)) if leader == client => {
                self.leader = None;
                self.tabs
                    .keys()
                    .map(|&to| Action::Send {
                        to,
                        message: FromRouter::LeaderLost { epoch },
                    })
                    .collect()
            }
            Some((leader, _)) => vec![Action::Send {
                to: leader,
                message: FromRouter::Gone { client },
            }],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);
    const C: ClientId = ClientId(3);

    fn lock(c: ClientId) -> String {
        format!("tab:{}", c.0)
    }

    fn brokers(actions: &[Action]) -> Vec<(u64, ClientId, ClientId)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Broker {
                    epoch,
                    leader,
                    client,
                } => Some((epoch.0, *leader, *client)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn joins_before_and_after_a_leader_get_a_port() {
        let mut r = Registry::new();
        let a = r.hello(A, lock(A));
        assert_eq!(
            a,
            vec![Action::WatchTab {
                client: A,
                tab_lock: lock(A)
            }]
        );
        r.hello(B, lock(B));
        // A becomes leader: every tab (the leader too) gets a port to it.
        assert_eq!(
            brokers(&r.leader_ready(A, Epoch(1))),
            vec![(1, A, A), (1, A, B)]
        );
        // A later joiner is connected at once.
        assert_eq!(brokers(&r.hello(C, lock(C))), vec![(1, A, C)]);
        assert_eq!(r.leader(), Some((A, Epoch(1))));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_repeated_hello_is_not_watched_twice() {
        let mut r = Registry::new();
        r.hello(A, lock(A));
        assert!(r.hello(A, lock(A)).is_empty());
    }

    #[test]
    fn follower_leaving_is_reported_to_the_leader() {
        let mut r = Registry::new();
        r.hello(A, lock(A));
        r.hello(B, lock(B));
        r.leader_ready(A, Epoch(1));
        assert_eq!(
            r.gone(B),
            vec![Action::Send {
                to: A,
                message: FromRouter::Gone { client: B }
            }]
        );
        assert!(r.gone(B).is_empty(), "gone twice is a no-op");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn leader_death_tells_everyone_and_the_next_leader_takes_over() {
        let mut r = Registry::new();
        for c in [A, B, C] {
            r.hello(c, lock(c));
        }
        r.leader_ready(A, Epoch(4));
        let lost = r.gone(A);
        assert_eq!(lost.len(), 2);
        assert!(lost.iter().all(|a| matches!(
            a,
            Action::Send {
                message: FromRouter::LeaderLost { epoch: Epoch(4) },
                ..
            }
        )));
        assert_eq!(r.leader(), None);
        assert_eq!(
            brokers(&r.leader_ready(B, Epoch(5))),
            vec![(5, B, B), (5, B, C)]
        );
    }

    #[test]
    fn a_new_leader_racing_the_old_ones_death_wins() {
        let mut r = Registry::new();
        for c in [A, B] {
            r.hello(c, lock(c));
        }
        r.leader_ready(A, Epoch(1));
        // B got the lock and opened the database before the router noticed
        // A's death.
        assert_eq!(
            brokers(&r.leader_ready(B, Epoch(2))),
            vec![(2, B, A), (2, B, B)]
        );
        // A's death is then only news for the leader, not a leader loss.
        assert_eq!(
            r.gone(A),
            vec![Action::Send {
                to: B,
                message: FromRouter::Gone { client: A }
            }]
        );
        assert_eq!(r.leader(), Some((B, Epoch(2))));
    }

    #[test]
    fn stale_epoch_claims_are_ignored() {
        let mut r = Registry::new();
        for c in [A, B] {
            r.hello(c, lock(c));
        }
        r.leader_ready(B, Epoch(7));
        // A late message from a previous leader term.
        assert!(r.leader_ready(A, Epoch(6)).is_empty());
        assert!(r.leader_ready(A, Epoch(7)).is_empty());
        assert_eq!(r.leader(), Some((B, Epoch(7))));
        // Even after the leader is lost, old epochs stay stale.
        r.gone(B);
        assert!(r.leader_ready(A, Epoch(7)).is_empty());
        assert_eq!(brokers(&r.leader_ready(A, Epoch(8))), vec![(8, A, A)]);
    }

    #[test]
    fn unknown_tabs_cannot_lead() {
        let mut r = Registry::new();
        assert!(r.leader_ready(A, Epoch(1)).is_empty());
        assert_eq!(r.leader(), None);
        assert!(r.gone(A).is_empty());
    }
}
