//! The RVN watch: which holder RVN a client has seen on each lock, since when,
//! and when that RVN has stood still long enough to take the lock over.
//!
//! Time runs from the moment a refusal's reply *arrived*: the holder wrote its RVN
//! before the server read it for us, so the holder's lease had started by then and
//! a takeover cannot come early. Clocks are monotonic ([`Instant`]), never wall time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A holder's RVN as first seen, and the holder's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    rvn: i64,
    since: Instant,
    lease: Duration,
}

impl Sighting {
    fn takeover_at(&self) -> Instant {
        self.since + self.lease
    }
}

/// What a client has seen of the locks it could not get, by lock name.
#[derive(Debug, Default)]
pub(crate) struct Observations {
    by_name: HashMap<String, Sighting>,
}

impl Observations {
    /// The RVN to pass as `observed_rvn` at `now`: the holder's RVN once it has
    /// stood still for the holder's whole lease, else `None`.
    pub fn takeover_rvn(&self, name: &str, now: Instant) -> Option<i64> {
        self.by_name
            .get(name)
            .filter(|sighting| now >= sighting.takeover_at())
            .map(|sighting| sighting.rvn)
    }

    /// Notes a refusal that arrived at `now` from a holder at `rvn` with `lease`.
    /// The watch restarts only when the RVN differs from the one watched.
    pub fn refused(&mut self, name: &str, rvn: i64, lease: Duration, now: Instant) {
        let sighting = Sighting {
            rvn,
            since: now,
            lease,
        };
        match self.by_name.get_mut(name) {
            Some(watched) if watched.rvn == rvn => {}
            Some(watched) => *watched = sighting,
            None => {
                self.by_name.insert(name.to_owned(), sighting);
            }
        }
    }

    /// When the watched RVN will have stood still for its holder's lease.
    pub fn takeover_at(&self, name: &str) -> Option<Instant> {
        self.by_name.get(name).map(Sighting::takeover_at)
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
        let start = Instant::now();
        let mut seen = Observations::default();
        assert_eq!(seen.takeover_rvn("a", start), None);
        seen.refused("a", 7, LEASE, start);
        assert_eq!(seen.takeover_rvn("a", start + LEASE / 2), None);
        seen.refused("a", 7, LEASE, start + LEASE / 2);
        assert_eq!(
            seen.takeover_rvn("a", start + LEASE - Duration::from_nanos(1)),
            None
        );
        assert_eq!(seen.takeover_rvn("a", start + LEASE), Some(7));
        assert_eq!(seen.takeover_at("a"), Some(start + LEASE));
    }

    #[test]
    fn a_new_rvn_restarts_the_watch_with_its_lease() {
        let start = Instant::now();
        let mut seen = Observations::default();
        seen.refused("a", 7, LEASE, start);
        let later = start + LEASE / 2;
        seen.refused("a", 9, 2 * LEASE, later);
        assert_eq!(seen.takeover_rvn("a", start + LEASE), None);
        assert_eq!(seen.takeover_rvn("a", later + 2 * LEASE), Some(9));
    }

    #[test]
    fn names_are_watched_apart_and_forgotten() {
        let start = Instant::now();
        let mut seen = Observations::default();
        seen.refused("a", 7, LEASE, start);
        seen.refused("b", 8, LEASE, start + LEASE);
        assert_eq!(seen.takeover_rvn("a", start + LEASE), Some(7));
        assert_eq!(seen.takeover_rvn("b", start + LEASE), None);
        seen.forget("a");
        assert_eq!(seen.takeover_rvn("a", start + 3 * LEASE), None);
        assert_eq!(seen.takeover_at("a"), None);
    }
}
