//! `try_acquire` answers at once, and still takes a dead holder's lock over later.

mod common;

use std::time::Duration;

use common::{client, ms, superuser, unique};
use pglock_client::{AcquireOptions, TryAcquireOutcome};
use tokio::time::{sleep, Instant};

/// Heartbeats every tenth of the lease: one may come late by most of a lease on a
/// loaded machine and the holder still keeps the lock.
const HOLDER_LEASE: Duration = Duration::from_millis(1_500);

/// While the holder heartbeats every try is refused with the holder's row; once
/// the holder falls silent, tries keep being refused until its last RVN has
/// stood still for its lease (by the server's watch, or this client's), then
/// one takes the lock over, never sooner than a lease after that last write.
/// The holder is a plain session heartbeating by hand, so the test knows when
/// it sent its last write.
#[tokio::test]
async fn try_acquire_fails_fast_then_takes_over_a_dead_holder() {
    let name = unique("dead");
    let holder = superuser().await;
    let rival = client(&unique("rival"), ms(300), ms(100)).await;
    let lease_secs = HOLDER_LEASE.as_secs_f64();
    let mut rvn: i64 = holder
        .query_one(
            "SELECT rvn FROM pglock_acquire($1, 'holder', make_interval(secs => $2), 'holder''s')",
            &[&name, &lease_secs],
        )
        .await
        .unwrap()
        .get(0);
    let first_rvn = rvn;
    let mut last_sent = Instant::now();
    let started = Instant::now();
    while started.elapsed() < 2 * HOLDER_LEASE {
        match rival.try_acquire(&name).await.unwrap() {
            TryAcquireOutcome::Held(holder_row) => {
                assert_eq!(holder_row.owner, "holder");
                assert_eq!(holder_row.lease, HOLDER_LEASE);
                assert_eq!(holder_row.data.as_deref(), Some(&b"holder's"[..]));
                assert!(holder_row.rvn >= first_rvn);
            }
            TryAcquireOutcome::Acquired(_) => panic!("took a live holder's lock"),
            TryAcquireOutcome::Queued => panic!("nobody waits for it"),
        }
        sleep(ms(25)).await;
        if last_sent.elapsed() >= HOLDER_LEASE / 10 {
            last_sent = Instant::now();
            rvn = holder
                .query_one("SELECT pglock_heartbeat($1, 'holder', $2)", &[&name, &rvn])
                .await
                .unwrap()
                .get(0);
        }
    }
    assert!(rvn > first_rvn, "the holder heartbeated meanwhile");

    // Silent now.  Tries every 25 ms for up to ten leases.
    for _ in 0..(10 * HOLDER_LEASE.as_millis() / 25) {
        match rival.try_acquire(&name).await.unwrap() {
            TryAcquireOutcome::Held(holder_row) => assert_eq!(holder_row.rvn, rvn),
            TryAcquireOutcome::Queued => panic!("nobody waits for it"),
            TryAcquireOutcome::Acquired(taken) => {
                let stood_still = last_sent.elapsed();
                assert!(
                    stood_still >= HOLDER_LEASE,
                    "took over {stood_still:?} after the holder's last write"
                );
                assert!(taken.rvn() > rvn);
                assert_eq!(taken.data(), Some(&b"holder's"[..]), "data is kept");
                taken.release().await.unwrap();
                return;
            }
        }
        sleep(ms(25)).await;
    }
    panic!("never took the dead holder's lock over");
}

/// A free lock, or one released with `keep`, is taken at the first try, with the
/// data the last holder left.
#[tokio::test]
async fn try_acquire_takes_a_released_lock_with_its_data() {
    let name = unique("kept");
    let first = client(&unique("first"), ms(1_000), ms(250)).await;
    let second = client(&unique("second"), ms(1_000), ms(250)).await;

    let lock = first
        .try_acquire_with(&name, &AcquireOptions::new().data("v1"))
        .await
        .unwrap()
        .into_lock()
        .expect("a free lock");
    assert_eq!(lock.data(), Some(&b"v1"[..]));
    assert!(second
        .try_acquire(&name)
        .await
        .unwrap()
        .into_lock()
        .is_none());
    lock.release_keeping(Some(b"v2")).await.unwrap();

    let info = second.get(&name).await.unwrap().unwrap();
    assert!(info.released);
    assert_eq!(info.data.as_deref(), Some(&b"v2"[..]));

    let lock = second
        .try_acquire(&name)
        .await
        .unwrap()
        .into_lock()
        .expect("a released lock");
    assert_eq!(lock.data(), Some(&b"v2"[..]));
    assert_eq!(lock.owner(), second.config().owner());
    assert!(lock.rvn() > info.rvn);
    lock.release().await.unwrap();
    assert_eq!(second.get(&name).await.unwrap(), None);
}
