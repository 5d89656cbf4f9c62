//! Retry policy for opening the OPFS pool while a previous owner (a closing
//! tab's worker) still holds its access handles.

/// Exponential backoff with a cap and a total budget.
#[derive(Clone, Debug)]
pub struct Backoff {
    next_ms: u32,
    max_ms: u32,
    budget_ms: u32,
    spent_ms: u32,
}

impl Backoff {
    /// Starts at `first_ms`, doubles up to `max_ms`, gives up once `budget_ms`
    /// of waiting has been spent.
    pub fn new(first_ms: u32, max_ms: u32, budget_ms: u32) -> Self {
        Backoff {
            next_ms: first_ms.max(1),
            max_ms,
            budget_ms,
            spent_ms: 0,
        }
    }

    /// The policy used to open the pool: handles of a closed tab are released
    /// within tens of milliseconds, of a crashed renderer within about 50 ms,
    /// so retry often (every 16 ms at most: each late retry is failover time
    /// lost); a live owner (another tab that is still leader) never lets go,
    /// so stop after 10 s and report it.
    pub fn for_pool_open() -> Self {
        Backoff::new(4, 16, 10_000)
    }

    /// Milliseconds spent waiting so far.
    pub fn spent_ms(&self) -> u32 {
        self.spent_ms
    }
}

impl Iterator for Backoff {
    type Item = u32;

    /// The next delay, or `None` when the budget is spent.
    fn next(&mut self) -> Option<u32> {
        if self.spent_ms >= self.budget_ms {
            return None;
        }
        let delay = self.next_ms.min(self.budget_ms - self.spent_ms);
        self.spent_ms += delay;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stops_at_the_budget() {
        let delays: Vec<u32> = Backoff::new(5, 40, 200).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 40, 40, 40, 5]);
        assert_eq!(delays.iter().sum::<u32>(), 200);
    }

    #[test]
    fn pool_open_retries_often_and_gives_up_after_10_s() {
        let delays: Vec<u32> = Backoff::for_pool_open().collect();
        assert!(
            delays.iter().all(|&d| d <= 16),
            "never waits long between tries"
        );
        let within_100ms = delays.iter().scan(0, |t, d| {
            *t += d;
            Some(*t)
        });
        assert!(within_100ms.take_while(|&t| t <= 100).count() >= 6);
        assert_eq!(delays.iter().sum::<u32>(), 10_000);
    }
}
