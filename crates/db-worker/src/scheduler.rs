//! Orders requests around interactive transactions: while one is open, every
//! other request waits; the transaction holds a lease that expires when its
//! holder goes quiet, and then it is rolled back.
//!
//! Sans-IO: the caller passes the current time and arms one timer for
//! [`Scheduler::next_deadline`].

use std::collections::{HashMap, VecDeque};

use sqlite_tabs_protocol::{
    ChangeEvent, ClientId, Error, Reply, Request, RequestEnvelope, RequestId, RunResult,
    Statements, TxId,
};

use crate::engine::{Engine, Outcome};

/// Milliseconds an interactive transaction may stay idle before it is
/// rolled back.
pub const DEFAULT_LEASE_MS: f64 = 30_000.0;

/// How many recent `Begin` requests are remembered with their transaction.
const BEGINS_KEPT: usize = 64;

/// What the scheduler wants sent.
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    /// Answers, in the order they were produced, each with the commit it
    /// made.
    pub replies: Vec<(RequestId, Result<Reply, Error>, Option<ChangeEvent>)>,
    /// Commits to announce to every tab.
    pub changes: Vec<ChangeEvent>,
}

impl Output {
    fn push(&mut self, id: RequestId, outcome: Outcome) {
        self.changes.extend(outcome.change.clone());
        self.replies.push((id, outcome.result, outcome.change));
    }
}

struct Lease {
    tx: TxId,
    holder: ClientId,
    deadline: f64,
    /// Set when the transaction is that of a batch sent in parts.
    parts: Option<Parts>,
}

/// A batch arriving in parts (see [`Request::BatchPart`]).
struct Parts {
    id: RequestId,
    /// Index of the part to run next.
    next: u32,
    /// Results of the parts run so far.
    results: Vec<RunResult>,
}

/// Whether a write that finds nothing waiting before it runs at once, or
/// first lets the messages already queued behind it arrive (one hop) so that
/// they share its commit. The hop costs a sequential writer 60-150 us per
/// write on this machine (W1 through the API, leader and follower) and buys
/// nothing when nobody else writes; concurrent writers need it to be grouped.
///
/// A write runs at once when its client wrote last and says it has nothing
/// else pending: one tab writing one request after another. Writes of
/// several tabs interleave (the previous write is another client's), and a
/// tab with several writes in flight flags them: both wait for the group.
#[derive(Debug, Default)]
pub struct GroupWait {
    last_writer: Option<ClientId>,
}

impl GroupWait {
    /// Notes a request arriving; true when it need not wait for others to
    /// share its commit (`groupable`: it could share one; reads never wait).
    pub fn run_at_once(&mut self, envelope: &RequestEnvelope, groupable: bool) -> bool {
        if !groupable {
            return true;
        }
        let client = envelope.id.client;
        let wrote_last = self.last_writer.replace(client) == Some(client);
        wrote_last && !envelope.others_pending
    }
}

/// Runs requests on an [`Engine`] in a safe order.
pub struct Scheduler {
    engine: Engine,
    waiting: VecDeque<RequestEnvelope>,
    lease: Option<Lease>,
    lease_ms: f64,
    /// Recent `Begin` requests and the transaction each opened. A client
    /// sends its unanswered requests again when it reconnects to the same
    /// leader (the router restarted), and the originals may have arrived: a
    /// Begin must not open a second transaction, which nobody would end.
    began: VecDeque<(RequestId, TxId)>,
    /// Answers to what may have written inside the open transaction, for
    /// the same reason: a statement sent again must not run twice. (Writes
    /// outside transactions are kept exactly-once by the engine's log.)
    tx_answers: HashMap<RequestId, Result<Reply, Error>>,
}

impl Scheduler {
    /// Wraps an engine; `lease_ms` is the idle time after which an
    /// interactive transaction is rolled back.
    pub fn new(engine: Engine, lease_ms: f64) -> Self {
        Scheduler {
            engine,
            waiting: VecDeque::new(),
            lease: None,
            lease_ms,
            began: VecDeque::new(),
            tx_answers: HashMap::new(),
        }
    }

    /// The engine, for inspection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Gives the engine back (to close the connection).
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// Number of requests waiting for an interactive transaction to end.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// When [`Scheduler::on_timer`] must be called next, if at all.
    pub fn next_deadline(&self) -> Option<f64> {
        self.lease.as_ref().map(|l| l.deadline)
    }

    /// Accepts a request: runs it now, or queues it behind the open
    /// interactive transaction.
    pub fn submit(&mut self, envelope: RequestEnvelope, now: f64) -> Output {
        let mut out = Output::default();
        self.run_or_queue(envelope, now, &mut out);
        self.drain(now, &mut out);
        out
    }

    /// Accepts requests that arrived together. Consecutive writes that can
    /// share a transaction are committed together (group commit); everything
    /// else runs as [`Scheduler::submit`] would, in arrival order.
    pub fn submit_all(&mut self, envelopes: Vec<RequestEnvelope>, now: f64) -> Output {
        let mut out = Output::default();
        let mut group: Vec<RequestEnvelope> = Vec::new();
        for envelope in envelopes {
            if self.lease.is_none() && self.engine.groupable(&envelope.request) {
                group.push(envelope);
                continue;
            }
            self.run_group(&mut group, &mut out);
            self.run_or_queue(envelope, now, &mut out);
        }
        self.run_group(&mut group, &mut out);
        self.drain(now, &mut out);
        out
    }

    fn run_group(&mut self, group: &mut Vec<RequestEnvelope>, out: &mut Output) {
        if group.is_empty() {
            return;
        }
        let ids: Vec<RequestId> = group.iter().map(|e| e.id).collect();
        let outcomes = self
            .engine
            .execute_group(group.drain(..).map(|e| (e.id, e.request)).collect());
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            out.push(id, outcome);
        }
    }

    /// Checkpoints the WAL if it has grown past the threshold (see
    /// [`Engine::checkpoint_if_due`]); for when the answers are out.
    pub fn checkpoint_if_due(&mut self) {
        self.engine.checkpoint_if_due();
    }

    /// Whether the request could join a group commit (see
    /// [`Engine::groupable`]).
    pub fn groupable(&mut self, request: &Request) -> bool {
        self.engine.groupable(request)
    }

    /// Expires the lease if its deadline has passed.
    pub fn on_timer(&mut self, now: f64) -> Output {
        let mut out = Output::default();
        if let Some(lease) = &self.lease {
            if now >= lease.deadline {
                let tx = lease.tx;
                self.end_lease();
                self.engine.abort_tx(tx);
                self.drain(now, &mut out);
            }
        }
        out
    }

    /// A client went away: roll back its transaction and drop its queued
    /// requests (nobody is left to answer).
    pub fn client_gone(&mut self, client: ClientId, now: f64) -> Output {
        let mut out = Output::default();
        self.waiting.retain(|e| e.id.client != client);
        if let Some(lease) = &self.lease {
            if lease.holder == client {
                let tx = lease.tx;
                self.end_lease();
                self.engine.abort_tx(tx);
            }
        }
        self.drain(now, &mut out);
        out
    }

    /// Fails every queued request (the database is closing).
    pub fn fail_waiting(&mut self, error: &Error) -> Output {
        let mut out = Output::default();
        for e in self.waiting.drain(..) {
            out.replies.push((e.id, Err(error.clone()), None));
        }
        out
    }

    fn end_lease(&mut self) {
        self.lease = None;
        self.tx_answers.clear();
    }

    /// The answer to a request that already ran and must not run again.
    fn answered(&self, envelope: &RequestEnvelope) -> Option<Result<Reply, Error>> {
        if !matches!(envelope.request, Request::Begin) {
            return self.tx_answers.get(&envelope.id).cloned();
        }
        let (_, tx) = self.began.iter().find(|(id, _)| *id == envelope.id)?;
        Some(match &self.lease {
            Some(lease) if lease.tx == *tx => Ok(Reply::Began(*tx)),
            _ => Err(Error::bad_request(format!(
                "transaction {} already ended",
                tx.0
            ))),
        })
    }

    fn run_or_queue(&mut self, envelope: RequestEnvelope, now: f64, out: &mut Output) {
        let envelope = match envelope.request {
            Request::BatchPart {
                index,
                last,
                statements,
            } => return self.run_part(envelope.id, index, last, statements, now, out),
            Request::CancelBatch => return self.cancel_batch(envelope.id),
            request => RequestEnvelope {
                request,
                ..envelope
            },
        };
        if let Some(answer) = self.answered(&envelope) {
            if let Some(lease) = &mut self.lease {
                if lease.holder == envelope.id.client {
                    lease.deadline = now + self.lease_ms;
                }
            }
            out.replies.push((envelope.id, answer, None));
            return;
        }
        match (&mut self.lease, envelope.request.tx()) {
            (Some(lease), Some(tx)) if lease.tx == tx => {
                lease.deadline = now + self.lease_ms;
                let ends = matches!(
                    envelope.request,
                    Request::Commit { .. } | Request::Rollback { .. }
                );
                let keep = !ends && self.engine.may_write(&envelope.request);
                let outcome = self.engine.execute(envelope.id, envelope.request);
                if ends || self.engine.open_tx() != Some(tx) {
                    self.end_lease();
                } else if keep {
                    self.tx_answers.insert(envelope.id, outcome.result.clone());
                }
                out.push(envelope.id, outcome);
            }
            (Some(_), _) => self.waiting.push_back(envelope),
            (None, tx) => {
                let outcome = self.engine.execute(envelope.id, envelope.request);
                if let (Ok(Reply::Began(tx)), None) = (&outcome.result, tx) {
                    self.lease = Some(Lease {
                        tx: *tx,
                        holder: envelope.id.client,
                        deadline: now + self.lease_ms,
                        parts: None,
                    });
                    if self.began.len() == BEGINS_KEPT {
                        self.began.pop_front();
                    }
                    self.began.push_back((envelope.id, *tx));
                }
                out.push(envelope.id, outcome);
            }
        }
    }

    /// Runs part `index` of batch `id`: opens the batch's transaction at
    /// the first part, commits it at the last, and queues the part while
    /// another transaction is open.
    fn run_part(
        &mut self,
        id: RequestId,
        index: u32,
        last: bool,
        statements: Statements,
        now: f64,
        out: &mut Output,
    ) {
        let mine = matches!(&self.lease, Some(Lease { parts: Some(p), .. }) if p.id == id);
        if self.lease.is_some() && !mine {
            self.waiting.push_back(RequestEnvelope {
                id,
                request: Request::BatchPart {
                    index,
                    last,
                    statements,
                },
                others_pending: false,
            });
            return;
        }
        if !mine {
            // No batch of this id is open: this starts it, or the batch has
            // ended (committed, failed or expired) and this was sent again.
            let applied = match self.engine.applied(id) {
                Ok(applied) => applied,
                Err(e) => return out.replies.push((id, Err(e), None)),
            };
            if index != 0 || applied.is_some() {
                if last {
                    let answer = applied.ok_or_else(|| {
                        Error::bad_request(
                            "the batch's transaction ended before its last part arrived \
                             (its tab went quiet for too long, or a part failed); \
                             nothing was written",
                        )
                    });
                    out.replies.push((id, answer, None));
                }
                return;
            }
            match self.engine.begin() {
                Ok(tx) => {
                    self.lease = Some(Lease {
                        tx,
                        holder: id.client,
                        deadline: now + self.lease_ms,
                        parts: Some(Parts {
                            id,
                            next: 0,
                            results: Vec::new(),
                        }),
                    })
                }
                Err(e) => return out.replies.push((id, Err(e), None)),
            }
        }
        let Some(Lease {
            tx,
            deadline,
            parts: Some(parts),
            ..
        }) = &mut self.lease
        else {
            return;
        };
        let tx = *tx;
        if index < parts.next {
            // Sent again (the router restarted) after it ran.
            return;
        }
        if index > parts.next {
            let expected = parts.next;
            self.end_lease();
            self.engine.abort_tx(tx);
            let e = Error::bad_request(format!(
                "batch part {index} arrived before part {expected}; the batch was rolled back, \
                 nothing was written"
            ));
            return out.replies.push((id, Err(e), None));
        }
        *deadline = now + self.lease_ms;
        let before = parts.results.len();
        match self.engine.run_part(tx, &statements, before) {
            Ok(results) => {
                let Some(Lease {
                    parts: Some(parts), ..
                }) = &mut self.lease
                else {
                    return;
                };
                parts.results.extend(results);
                parts.next += 1;
                if last {
                    let results = std::mem::take(&mut parts.results);
                    self.end_lease();
                    let outcome = self.engine.commit_parts(id, tx, results);
                    out.push(id, outcome);
                }
            }
            Err(e) => {
                self.end_lease();
                self.engine.abort_tx(tx);
                out.replies.push((id, Err(e), None));
            }
        }
    }

    /// Rolls back batch `id`'s parts, run or queued.
    fn cancel_batch(&mut self, id: RequestId) {
        self.waiting
            .retain(|e| !(e.id == id && matches!(e.request, Request::BatchPart { .. })));
        if let Some(Lease {
            tx,
            parts: Some(parts),
            ..
        }) = &self.lease
        {
            if parts.id == id {
                let tx = *tx;
                self.end_lease();
                self.engine.abort_tx(tx);
            }
        }
    }

    /// Runs queued requests while no transaction is open, and the queued
    /// parts of a batch whose transaction is.
    fn drain(&mut self, now: f64, out: &mut Output) {
        loop {
            let next = match &self.lease {
                None => self.waiting.pop_front(),
                Some(Lease {
                    parts: Some(parts), ..
                }) => {
                    let id = parts.id;
                    self.waiting
                        .iter()
                        .position(|e| e.id == id)
                        .and_then(|i| self.waiting.remove(i))
                }
                Some(_) => None,
            };
            let Some(next) = next else {
                break;
            };
            self.run_or_queue(next, now, out);
        }
    }
}
