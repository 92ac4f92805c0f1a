//! A waiting acquire ends by its `wait_at_most`, also when the client's
//! connection goes silent: its server backend stopped (SIGSTOP), as a host cut
//! off by a network partition, or a server that stopped answering, looks. A
//! call on such a connection gets no answer and no error until TCP gives up;
//! the acquire must not wait for that (tests/partitions/ saw acquires with a
//! 4 s limit last 30 s, until the partition healed).

mod common;

use std::time::{Duration, Instant};

use common::{client, ms, superuser, unique, within};
use pglock_client::{AcquireOptions, Error};

/// Resumes a stopped backend however the test ends.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill() with a pid and a signal number; no memory is involved.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_ends_by_its_limit_when_its_connection_goes_silent() {
    let (lease, period) = (Duration::from_secs(4), Duration::from_secs(1));
    let name = unique("silent");
    let holder = client(&unique("silent-holder"), lease, period).await;
    let lock = holder
        .acquire(&name)
        .await
        .expect("the holder takes the lock");
    let owner = unique("silent-waiter");
    let waiter = client(&owner, lease, period).await;
    // The waiter's connection is open (its statements are prepared): stop its backend.
    let pid: i32 = superuser()
        .await
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&owner],
        )
        .await
        .expect("the waiter's backend")
        .get(0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Stopped(pid);
    let wait = ms(1500);
    let start = Instant::now();
    let outcome = within(
        Duration::from_secs(20),
        "the acquire to end",
        waiter.acquire_with(&name, &AcquireOptions::new().wait_at_most(wait)),
    )
    .await;
    let took = start.elapsed();
    drop(stopped);
    assert!(
        matches!(outcome, Err(Error::Timeout { .. })),
        "expected a timeout, got {outcome:?}"
    );
    assert!(
        took < wait + period + ms(500),
        "the acquire took {took:?} for a wait of {wait:?} (period {period:?})"
    );
    lock.release().await.expect("the holder releases");
}
