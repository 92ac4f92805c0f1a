//! What a client has seen of the locks it could not get: per lock name, the
//! protocol's [`Watch`] on the holder's RVN (see `pglock_protocol::waiting`).
//!
//! Time runs from the moment a refusal's reply *arrived*: the holder wrote its RVN
//! before the server read it for us, so the holder's lease had started by then and
//! a takeover cannot come early. Clocks are monotonic (tokio's [`Instant`], which
//! tests can pause), never wall time.

use std::collections::HashMap;
use std::time::Duration;

use pglock_protocol::{Seen, Watch};
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Observations {
    /// The origin of the protocol's elapsed times.
    origin: Instant,
    by_name: HashMap<String, Watch>,
}

impl Observations {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            by_name: HashMap::new(),
        }
    }

    /// `at` as the protocol's elapsed time.
    pub fn elapsed(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// The protocol's elapsed time `elapsed` as an instant.
    pub fn instant(&self, elapsed: Duration) -> Instant {
        self.origin + elapsed
    }

    /// The RVN to pass as `observed_rvn` at `now`: the holder's RVN once it has
    /// stood still for the holder's whole lease, else `None`.
    pub fn takeover_rvn(&self, name: &str, now: Instant) -> Option<i64> {
        let watch = self.by_name.get(name)?;
        watch.observed_rvn(self.elapsed(now))
    }

    /// Notes a refusal that arrived at `now` from a holder at `rvn` with `lease`,
    /// for an attempt that presented `presented` as `observed_rvn`.
    pub fn refused(
        &mut self,
        name: &str,
        rvn: i64,
        lease: Duration,
        now: Instant,
        presented: Option<i64>,
    ) {
        let seen = Seen {
            rvn,
            lease,
            stood_still: None,
        };
        let watch = Watch::after_refusal(self.watch(name), seen, self.elapsed(now), presented);
        self.by_name.insert(name.to_owned(), watch);
    }

    /// What was seen of `name`'s holder, if anything.
    pub fn watch(&self, name: &str) -> Option<Watch> {
        self.by_name.get(name).copied()
    }

    /// Remember `watch` (what a wait saw) for `name`.
    pub fn keep(&mut self, name: &str, watch: Option<Watch>) {
        match watch {
            Some(watch) => self.by_name.insert(name.to_owned(), watch),
            None => self.by_name.remove(name),
        };
    }

    /// Forgets a lock, once acquired.
    pub fn forget(&mut self, name: &str) {
        self.by_name.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    #[test]
    fn takes_over_only_after_the_same_rvn_stood_still_for_the_lease() {
        let mut seen = Observations::new();
        let start = Instant::now();
        assert_eq!(seen.takeover_rvn("a", start), None);
        seen.refused("a", 7, LEASE, start, None);
        assert_eq!(seen.takeover_rvn("a", start + LEASE / 2), None);
        seen.refused("a", 7, LEASE, start + LEASE / 2, None);
        assert_eq!(
            seen.takeover_rvn("a", start + LEASE - Duration::from_nanos(1)),
            None
        );
        assert_eq!(seen.takeover_rvn("a", start + LEASE), Some(7));
    }

    #[test]
    fn a_new_rvn_restarts_the_watch_with_its_lease() {
        let mut seen = Observations::new();
        let start = Instant::now();
        seen.refused("a", 7, LEASE, start, None);
        let later = start + LEASE / 2;
        seen.refused("a", 9, 2 * LEASE, later, None);
        assert_eq!(seen.takeover_rvn("a", start + LEASE), None);
        assert_eq!(seen.takeover_rvn("a", later + 2 * LEASE), Some(9));
    }

    #[test]
    fn names_are_watched_apart_and_forgotten() {
        let mut seen = Observations::new();
        let start = Instant::now();
        seen.refused("a", 7, LEASE, start, None);
        seen.refused("b", 8, LEASE, start + LEASE, None);
        assert_eq!(seen.takeover_rvn("a", start + LEASE), Some(7));
        assert_eq!(seen.takeover_rvn("b", start + LEASE), None);
        seen.forget("a");
        assert_eq!(seen.takeover_rvn("a", start + 3 * LEASE), None);
    }

    #[test]
    fn a_kept_watch_is_what_the_next_try_presents() {
        let mut seen = Observations::new();
        let start = Instant::now();
        seen.refused("a", 7, LEASE, start, None);
        let watch = seen.watch("a");
        seen.forget("a");
        assert_eq!(seen.takeover_rvn("a", start + LEASE), None);
        seen.keep("a", watch);
        assert_eq!(seen.takeover_rvn("a", start + LEASE), Some(7));
        seen.keep("a", None);
        assert_eq!(seen.watch("a"), None);
    }
}
