//! One back-off for every retry loop: an iterator of pauses that ends when its
//! budget (attempts, time) is spent, as gitoxide's `gix-utils` back-off is an
//! iterator of sleeps. Each call site names its budget:
//!
//! ```
//! # use std::time::Duration;
//! # use mara::backoff::Backoff;
//! let mut pauses = Backoff::fixed(Duration::from_millis(1)).attempts(3);
//! let mut tries = 0;
//! loop {
//!     tries += 1;
//!     // ... try; on success break ...
//!     let Some(pause) = pauses.next() else { break }; // budget spent: give up
//!     std::thread::sleep(pause);
//! }
//! assert_eq!(tries, 3);
//! ```
//!
//! Jitter comes from `fastrand` (seeded per thread from the OS), so processes
//! that lost the same race do not retry in lockstep.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Growth {
    /// The same pause every time.
    Fixed,
    /// Each pause grows by the first one: 1, 2, 3 ... times it.
    Linear,
    /// Each pause doubles, up to a cap.
    Doubling { cap: Duration },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Jitter {
    None,
    /// Anywhere from a quarter of the pause to all of it.
    Spread,
    /// Anywhere from nothing to the whole pause.
    Full,
}

/// Pauses between attempts; `next()` is `None` once the budget is spent.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    growth: Growth,
    jitter: Jitter,
    /// Pauses handed out so far (the attempt that follows the n-th pause is n+1).
    given: u32,
    max_pauses: u32,
    deadline: Option<Instant>,
    started: Instant,
}

impl Backoff {
    fn new(first: Duration, growth: Growth, jitter: Jitter) -> Backoff {
        Backoff {
            first,
            growth,
            jitter,
            given: 0,
            max_pauses: u32::MAX,
            deadline: None,
            started: Instant::now(),
        }
    }

    /// The same pause every time.
    pub fn fixed(pause: Duration) -> Backoff {
        Backoff::new(pause, Growth::Fixed, Jitter::None)
    }

    /// Pauses of 1, 2, 3 ... times `step`.
    pub fn linear(step: Duration) -> Backoff {
        Backoff::new(step, Growth::Linear, Jitter::None)
    }

    /// Pauses that double from `first` up to `cap`, each a random quarter-to-whole
    /// of its size, so racing writers spread out.
    pub fn exponential(first: Duration, cap: Duration) -> Backoff {
        Backoff::new(first, Growth::Doubling { cap }, Jitter::Spread)
    }

    /// Each pause anywhere from a quarter of its size to all of it.
    pub fn spread_jitter(mut self) -> Backoff {
        self.jitter = Jitter::Spread;
        self
    }

    /// Each pause anywhere from nothing to its size.
    pub fn full_jitter(mut self) -> Backoff {
        self.jitter = Jitter::Full;
        self
    }

    /// At most `n` attempts in all: `n - 1` pauses between them.
    pub fn attempts(mut self, n: u32) -> Backoff {
        self.max_pauses = n.saturating_sub(1);
        self
    }

    /// No pause once `total` has passed since the back-off was made.
    pub fn within(mut self, total: Duration) -> Backoff {
        self.deadline = Some(self.started + total);
        self
    }

    /// How many attempts the pauses so far allowed (the first needs none).
    pub fn attempts_made(&self) -> u32 {
        self.given + 1
    }

    /// Time since the back-off was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn size(&self) -> Duration {
        match self.growth {
            Growth::Fixed => self.first,
            Growth::Linear => self.first.saturating_mul(self.given + 1),
            Growth::Doubling { cap } => self
                .first
                .checked_mul(1u32.checked_shl(self.given).unwrap_or(u32::MAX))
                .map_or(cap, |d| d.min(cap)),
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.given >= self.max_pauses || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let size = self.size();
        self.given += 1;
        let micros = u64::try_from(size.as_micros()).unwrap_or(u64::MAX);
        Some(match self.jitter {
            Jitter::None => size,
            Jitter::Spread => Duration::from_micros(fastrand::u64(micros / 4..=micros)),
            Jitter::Full => Duration::from_micros(fastrand::u64(0..=micros)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fixed_and_linear_pauses_and_the_attempt_budget() {
        let p: Vec<Duration> = Backoff::fixed(MS * 5).attempts(4).collect();
        assert_eq!(p, [MS * 5, MS * 5, MS * 5]);
        let p: Vec<Duration> = Backoff::linear(MS).attempts(4).collect();
        assert_eq!(p, [MS, MS * 2, MS * 3]);
        assert_eq!(Backoff::fixed(MS).attempts(1).next(), None);
    }

    #[test]
    fn exponential_pauses_double_up_to_the_cap_with_spread_jitter() {
        let p: Vec<Duration> = Backoff::exponential(MS, MS * 8).attempts(41).collect();
        assert_eq!(p.len(), 40);
        for (i, d) in p.iter().enumerate() {
            let size = MS * (1u32 << i.min(3));
            assert!(*d >= size / 4 && *d <= size, "pause {i}: {d:?} of {size:?}");
        }
    }

    #[test]
    fn full_jitter_stays_within_the_pause() {
        for d in Backoff::fixed(MS * 5).full_jitter().attempts(100) {
            assert!(d <= MS * 5);
        }
    }

    #[test]
    fn a_time_budget_ends_the_pauses_and_attempts_are_counted() {
        let mut b = Backoff::fixed(Duration::ZERO).within(Duration::ZERO);
        assert_eq!(b.next(), None);
        let mut b = Backoff::fixed(Duration::ZERO).attempts(3);
        assert_eq!(b.attempts_made(), 1);
        b.next();
        b.next();
        assert_eq!(b.attempts_made(), 3);
        assert_eq!(b.next(), None);
    }
}
