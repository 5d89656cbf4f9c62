//! Which commit notifications a tab has seen. Notifications reach a tab twice
//! (the writer's reply and the broadcast) and out of order across leaders;
//! each must reach subscribers once, and a hole means some were missed.

use std::collections::BTreeSet;

/// Commit sequence numbers seen so far.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// Every sequence number up to this one has been seen.
    contiguous: u64,
    /// Seen numbers above `contiguous` (there is a hole below them).
    ahead: BTreeSet<u64>,
}

impl SeqTracker {
    /// Starts knowing every commit up to `head`.
    pub fn new(head: u64) -> Self {
        SeqTracker {
            contiguous: head,
            ahead: BTreeSet::new(),
        }
    }

    /// Records `seq`; true if it is new (to be dispatched).
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq <= self.contiguous || !self.ahead.insert(seq) {
            return false;
        }
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        true
    }

    /// If some commit was missed: the last number before the first hole, to
    /// ask the leader for what came after it.
    pub fn missing_after(&self) -> Option<u64> {
        (!self.ahead.is_empty()).then_some(self.contiguous)
    }

    /// Forgets holes that can no longer be filled: everything up to `head`
    /// counts as seen.
    pub fn skip_to(&mut self, head: u64) {
        if head > self.contiguous {
            self.contiguous = head;
        }
        self.ahead.retain(|&s| s > head);
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    /// Highest sequence number seen.
    pub fn latest(&self) -> u64 {
        self.ahead.last().copied().unwrap_or(self.contiguous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_is_accepted_once() {
        let mut t = SeqTracker::new(10);
        assert!(!t.accept(9), "older than the start");
        assert!(!t.accept(10));
        assert!(t.accept(11));
        assert!(!t.accept(11), "reply and broadcast of the same commit");
        assert_eq!(t.missing_after(), None);
        assert_eq!(t.latest(), 11);
    }

    #[test]
    fn holes_are_reported_until_filled() {
        let mut t = SeqTracker::new(0);
        assert!(t.accept(1));
        assert!(t.accept(3));
        assert!(t.accept(5));
        assert_eq!(t.missing_after(), Some(1));
        assert!(t.accept(2));
        assert_eq!(t.missing_after(), Some(3));
        assert!(t.accept(4));
        assert_eq!(t.missing_after(), None);
        assert_eq!(t.latest(), 5);
        assert!(!t.accept(4));
    }

    #[test]
    fn skipping_gives_up_on_old_holes() {
        let mut t = SeqTracker::new(0);
        t.accept(3);
        t.accept(7);
        t.skip_to(5);
        assert_eq!(t.missing_after(), Some(5));
        assert!(t.accept(6));
        assert_eq!(t.missing_after(), None);
        assert_eq!(t.latest(), 7);
        t.skip_to(2);
        assert_eq!(t.latest(), 7, "never goes back");
    }
}
