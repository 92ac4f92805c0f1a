//! `try_acquire` answers at once, and still takes a dead holder's lock over later.

mod common;

use std::time::Duration;

use common::{client, ms, unique};
use pglock_client::{AcquireOptions, Attempt};
use tokio::time::{sleep, Instant};

/// Heartbeats every tenth of the lease: one may come late by most of a lease on a
/// loaded machine and the holder still keeps the lock.
const HOLDER_LEASE: Duration = Duration::from_millis(1_500);

/// While the holder heartbeats every try is refused with the holder's row; once
/// the holder is gone, tries keep being refused until the last RVN seen has stood
/// still for the holder's lease, then one takes the lock over.
#[tokio::test]
async fn try_acquire_fails_fast_then_takes_over_a_dead_holder() {
    let name = unique("dead");
    let holder = client(&unique("holder"), HOLDER_LEASE, HOLDER_LEASE / 10).await;
    let rival = client(&unique("rival"), ms(300), ms(100)).await;

    let lock = holder
        .acquire_with(&name, &AcquireOptions::new().data("holder's"))
        .await
        .unwrap();
    let first_rvn = lock.rvn();
    // The latest RVN refused, with the instant before the first try that saw it.
    let mut first_seen: Option<(i64, Instant)> = None;
    let started = Instant::now();
    while started.elapsed() < 2 * HOLDER_LEASE {
        let before = Instant::now();
        match rival.try_acquire(&name).await.unwrap() {
            Attempt::Held(holder_row) => {
                assert_eq!(holder_row.owner, holder.config().owner());
                assert_eq!(holder_row.lease, HOLDER_LEASE);
                assert_eq!(holder_row.data.as_deref(), Some(&b"holder's"[..]));
                assert!(holder_row.rvn >= first_rvn);
                if first_seen.map(|(rvn, _)| rvn) != Some(holder_row.rvn) {
                    first_seen = Some((holder_row.rvn, before));
                }
            }
            Attempt::Acquired(_) => panic!("took a live holder's lock"),
        }
        sleep(ms(25)).await;
    }
    assert!(lock.rvn() > first_rvn, "the holder heartbeated meanwhile");
    drop(lock);

    // Tries every 25 ms for up to ten leases.
    for _ in 0..(10 * HOLDER_LEASE.as_millis() / 25) {
        let before = Instant::now();
        match rival.try_acquire(&name).await.unwrap() {
            Attempt::Held(holder_row) => {
                assert_eq!(holder_row.owner, holder.config().owner());
                if first_seen.map(|(rvn, _)| rvn) != Some(holder_row.rvn) {
                    first_seen = Some((holder_row.rvn, before));
                }
            }
            Attempt::Acquired(taken) => {
                let (last_rvn, seen_at) = first_seen.expect("refused at least once");
                let stood_still = seen_at.elapsed();
                assert!(
                    stood_still >= HOLDER_LEASE,
                    "took over {stood_still:?} after first seeing RVN {last_rvn}"
                );
                assert!(taken.rvn() > last_rvn);
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
