//! What the server observed: each lock's last write, on the monotonic clock.
//!
//! Every write of a lock records its new RVN and when it was made, before it
//! can commit, so a lock that anyone can see at an RVN was recorded at it (or
//! forgotten, below).  A caller that asks how long a lock has stood still at
//! the RVN it read gets:
//!
//! - the time since that write, if the record is of that RVN;
//! - otherwise (the record is of a later write not visible yet, or of one that
//!   rolled back) the time since that later write or since the server began
//!   watching, whichever is later: the RVN read cannot be younger;
//! - for a lock without a record, the time since the server began watching:
//!   every write since then was recorded, unless forgotten.
//!
//! The server begins watching at its first pglock call as a primary (after a
//! start, a crash, a promotion), so locks written before (by it before a
//! restart, by a former primary, by a restore) count as unchanged only since
//! then: a restart falls back to watching a whole lease, never less.  Writes
//! that do not go through pglock's functions (a superuser's `UPDATE`, a
//! restore's `COPY`) move the start of the watch to their end.  The table has
//! room for `pglock.observed_locks` records, in buckets of [`WAYS`] that a
//! lock's key picks; when a bucket is full, its oldest record is forgotten, and
//! the locks of that bucket without a record count as unchanged only since that
//! record's write.  So an answer is never longer than the truth: later or lost
//! records only make takeovers wait longer.  (A server that writes more locks
//! within a lease than it has records for can thus wait longer than a lease to
//! vouch for a silent holder.)
//!
//! Records are read without locks: each bucket has a version that a writer
//! makes odd while it changes the bucket (a sequence lock), and a reader
//! retries until it read a bucket between two equal even versions.

use std::hint;
use std::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Records per bucket: a name's record lives in the bucket its key picks.
pub const WAYS: usize = 8;

/// The RVN recorded for a lock deleted (released without keep, forced free).
const DELETED: i64 = 0;

#[repr(C)]
pub struct Bucket {
    version: AtomicU64,
    /// The newest write this bucket forgot a record of (ns, 0: none).
    forgot: AtomicU64,
    records: [Record; WAYS],
}

/// One lock's last write; `database` 0 is a free record.
#[repr(C)]
struct Record {
    database: AtomicU32,
    key: AtomicU64,
    rvn: AtomicI64,
    /// Nanoseconds on the monotonic clock.
    written: AtomicU64,
}

/// The table, in shared memory (or, in tests, anywhere).
pub struct Observations<'a> {
    watching_since: &'a AtomicU64,
    forgotten: &'a AtomicU64,
    buckets: &'a [Bucket],
}

/// A lock, as the table keys it: its database and its name's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockKey {
    pub database: u32,
    pub key: u64,
}

impl<'a> Observations<'a> {
    pub fn new(
        watching_since: &'a AtomicU64,
        forgotten: &'a AtomicU64,
        buckets: &'a [Bucket],
    ) -> Observations<'a> {
        Observations {
            watching_since,
            forgotten,
            buckets,
        }
    }

    /// Record that `lock` was written at `rvn` at `now` (before the write can
    /// commit).
    pub fn written(&self, lock: LockKey, rvn: i64, now: Duration) {
        self.start_watching(now);
        let bucket = self.bucket(lock);
        let now = nanos(now);
        let version = bucket.lock();
        let records = &bucket.records;
        let index = records
            .iter()
            .position(|record| record.is(lock))
            .or_else(|| records.iter().position(Record::is_free))
            .unwrap_or_else(|| {
                // Full: forget the oldest, and count what it said as unknown.
                let written = |index: &usize| records[*index].written.load(Ordering::Relaxed);
                let oldest = (0..records.len()).min_by_key(written).unwrap_or(0);
                let record = &records[oldest];
                bucket
                    .forgot
                    .fetch_max(record.written.load(Ordering::Relaxed), Ordering::Relaxed);
                self.forgotten.fetch_add(1, Ordering::Relaxed);
                oldest
            });
        let record = &records[index];
        record.database.store(lock.database, Ordering::Relaxed);
        record.key.store(lock.key, Ordering::Relaxed);
        record.rvn.store(rvn, Ordering::Relaxed);
        record.written.store(now, Ordering::Relaxed);
        bucket.unlock(version);
    }

    /// Record that `lock` was deleted at `now`.
    pub fn deleted(&self, lock: LockKey, now: Duration) {
        self.written(lock, DELETED, now);
    }

    /// A write the table could not see (not through pglock's functions) ended
    /// at `now`: every lock may have been written until then.
    pub fn unseen_writes(&self, now: Duration) {
        self.watching_since.fetch_max(nanos(now), Ordering::Relaxed);
    }

    /// How long `lock` has stood still at `rvn` by the records, at `now`; `None`
    /// until the server watches.
    pub fn stood_still(&self, lock: LockKey, rvn: i64, now: Duration) -> Option<Duration> {
        let watching_since = self.watching_since.load(Ordering::Relaxed);
        if watching_since == 0 {
            return None;
        }
        let (record, forgot) = self.bucket(lock).read(lock);
        let since = match record {
            Some((recorded, written)) if recorded == rvn => written,
            Some((_, written)) => written.max(watching_since),
            None => watching_since.max(forgot),
        };
        Some(Duration::from_nanos(nanos(now).saturating_sub(since)))
    }

    /// Records forgotten for want of room since the server started.
    pub fn forgotten(&self) -> u64 {
        self.forgotten.load(Ordering::Relaxed)
    }

    /// Begin watching at `now`, unless the server already watches: the caller
    /// is a primary's (only a primary writes; a standby's callers never ask).
    pub fn start_watching(&self, now: Duration) {
        if self.watching_since.load(Ordering::Relaxed) == 0 {
            let _ = self.watching_since.compare_exchange(
                0,
                nanos(now).max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn bucket(&self, lock: LockKey) -> &Bucket {
        let mixed = lock.key ^ u64::from(lock.database).rotate_left(32);
        &self.buckets[(mixed % self.buckets.len() as u64) as usize]
    }
}

impl Bucket {
    /// Make the version odd, waiting out another writer.
    fn lock(&self) -> u64 {
        loop {
            let version = self.version.load(Ordering::Relaxed);
            if version.is_multiple_of(2)
                && self
                    .version
                    .compare_exchange_weak(
                        version,
                        version + 1,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return version + 1;
            }
            hint::spin_loop();
        }
    }

    fn unlock(&self, locked: u64) {
        self.version.store(locked + 1, Ordering::Release);
    }

    /// `lock`'s record as `(rvn, written)`, and the newest write the bucket
    /// forgot, read consistently.
    fn read(&self, lock: LockKey) -> (Option<(i64, u64)>, u64) {
        loop {
            let before = self.version.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                hint::spin_loop();
                continue;
            }
            let found = self
                .records
                .iter()
                .find(|record| record.is(lock))
                .map(|record| {
                    (
                        record.rvn.load(Ordering::Relaxed),
                        record.written.load(Ordering::Relaxed),
                    )
                });
            let forgot = self.forgot.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.version.load(Ordering::Relaxed) == before {
                return (found, forgot);
            }
        }
    }
}

impl Record {
    fn is(&self, lock: LockKey) -> bool {
        self.database.load(Ordering::Relaxed) == lock.database
            && self.key.load(Ordering::Relaxed) == lock.key
    }

    fn is_free(&self) -> bool {
        self.database.load(Ordering::Relaxed) == 0
    }
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    struct Table {
        watching_since: AtomicU64,
        forgotten: AtomicU64,
        buckets: Vec<Bucket>,
    }

    impl Table {
        fn new(buckets: usize) -> Table {
            Table {
                watching_since: AtomicU64::new(0),
                forgotten: AtomicU64::new(0),
                // SAFETY (of the test's zeroing): zero is a valid value of
                // every atomic in a bucket, as in shared memory.
                buckets: (0..buckets)
                    .map(|_| unsafe { std::mem::zeroed::<Bucket>() })
                    .collect(),
            }
        }

        fn observations(&self) -> Observations<'_> {
            Observations::new(&self.watching_since, &self.forgotten, &self.buckets)
        }
    }

    fn lock(key: u64) -> LockKey {
        LockKey { database: 5, key }
    }

    fn at(seconds: u64) -> Duration {
        SECOND * seconds as u32
    }

    #[test]
    fn nothing_is_known_until_the_server_watches() {
        let table = Table::new(4);
        assert_eq!(table.observations().stood_still(lock(1), 7, at(100)), None);
        table.observations().start_watching(at(100));
        assert_eq!(
            table.observations().stood_still(lock(1), 7, at(130)),
            Some(at(30)),
            "a lock never seen written: since the watch began"
        );
    }

    #[test]
    fn a_recorded_rvn_stood_still_since_its_write() {
        let table = Table::new(4);
        let seen = table.observations();
        seen.start_watching(at(10));
        seen.written(lock(1), 7, at(50));
        assert_eq!(seen.stood_still(lock(1), 7, at(80)), Some(at(30)));
        // Another database's lock of the same key is another lock.
        let elsewhere = LockKey {
            database: 6,
            key: 1,
        };
        assert_eq!(seen.stood_still(elsewhere, 7, at(80)), Some(at(70)));
    }

    #[test]
    fn an_rvn_other_than_the_recorded_one_is_no_older_than_the_record() {
        let table = Table::new(4);
        let seen = table.observations();
        seen.start_watching(at(10));
        seen.written(lock(1), 7, at(50));
        // A heartbeat wrote 8 at 60 and has not committed (or rolled back):
        // readers still see 7, which they may count only from 60.
        seen.written(lock(1), 8, at(60));
        assert_eq!(seen.stood_still(lock(1), 7, at(90)), Some(at(30)));
        assert_eq!(seen.stood_still(lock(1), 8, at(90)), Some(at(30)));
        seen.deleted(lock(1), at(70));
        assert_eq!(seen.stood_still(lock(1), 8, at(90)), Some(at(20)));
    }

    #[test]
    fn a_full_bucket_forgets_its_oldest_record_and_the_watch_restarts_there() {
        let table = Table::new(1);
        let seen = table.observations();
        seen.start_watching(at(1));
        for key in 0..WAYS as u64 {
            seen.written(lock(key), 100 + key as i64, at(10 + key));
        }
        assert_eq!(seen.forgotten(), 0);
        seen.written(lock(99), 500, at(40));
        assert_eq!(seen.forgotten(), 1);
        // Key 0 (written at 10) was forgotten: it counts from 10, no earlier.
        assert_eq!(seen.stood_still(lock(0), 100, at(50)), Some(at(40)));
        // So does any lock of the bucket without a record now.
        assert_eq!(seen.stood_still(lock(77), 1, at(50)), Some(at(40)));
        // Those still recorded keep their own writes.
        assert_eq!(seen.stood_still(lock(3), 103, at(50)), Some(at(37)));
        assert_eq!(seen.stood_still(lock(99), 500, at(50)), Some(at(10)));
    }

    #[test]
    fn what_a_bucket_forgets_concerns_only_its_own_locks() {
        // Two buckets: with this database, even keys land in one, odd in the other.
        let table = Table::new(2);
        let seen = table.observations();
        seen.start_watching(at(1));
        for n in 0..=WAYS as u64 {
            seen.written(lock(2 * n), 7, at(10 + n));
        }
        assert_eq!(seen.forgotten(), 1);
        assert_eq!(
            seen.stood_still(lock(1000), 1, at(50)),
            Some(at(40)),
            "even: from 10"
        );
        assert_eq!(
            seen.stood_still(lock(1001), 1, at(50)),
            Some(at(49)),
            "odd: from the start"
        );
    }

    #[test]
    fn writes_it_could_not_see_restart_the_watch_for_every_lock() {
        let table = Table::new(4);
        let seen = table.observations();
        seen.start_watching(at(1));
        seen.written(lock(1), 7, at(5));
        seen.unseen_writes(at(20));
        assert_eq!(
            seen.stood_still(lock(1), 7, at(30)),
            Some(at(25)),
            "its own record"
        );
        assert_eq!(seen.stood_still(lock(1), 6, at(30)), Some(at(10)));
        assert_eq!(seen.stood_still(lock(2), 1, at(30)), Some(at(10)));
    }

    #[test]
    fn readers_never_see_a_record_half_written() {
        let table = Table::new(1);
        let seen = table.observations();
        seen.start_watching(at(1));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 1..20_000u64 {
                    // rvn and time move together: rvn n is written at n seconds.
                    seen.written(lock(1), n as i64, at(n));
                }
            });
            for _ in 0..20_000 {
                if let (Some((rvn, written)), _) = seen.buckets[0].read(lock(1)) {
                    assert_eq!(written, nanos(at(rvn as u64)));
                }
            }
        });
    }
}
