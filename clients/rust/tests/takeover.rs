//! A waiting acquire takes a silent holder's lock over after the holder's lease,
//! never a live holder's.

mod common;

use std::time::Duration;

use common::{client, ms, unique, within, WAIT_LIMIT};
use pglock_client::{AcquireOptions, Error};
use tokio::time::{sleep, Instant};

const HOLDER_LEASE: Duration = Duration::from_millis(800);

/// The holder's Lock is dropped without a release: its heartbeat stops and the
/// rival, whose own lease is shorter, waits the *holder's* lease before taking over.
#[tokio::test]
async fn a_dropped_holder_is_taken_over_only_after_its_lease() {
    let name = unique("dropped");
    let holder = client(&unique("holder"), HOLDER_LEASE, ms(200)).await;
    let rival = client(&unique("rival"), ms(300), ms(100)).await;

    // Dropped at once: its only write is the acquire, sent at `sent`.
    let sent = Instant::now();
    let lock = holder.acquire(&name).await.unwrap();
    let token = lock.lost_token();
    let first_rvn = lock.rvn();
    drop(lock);
    assert!(token.is_cancelled(), "dropping fires the token");

    let taken = within(WAIT_LIMIT, "the takeover", rival.acquire(&name))
        .await
        .unwrap();
    let since_write = sent.elapsed();
    assert!(
        since_write >= HOLDER_LEASE,
        "took over {since_write:?} after the holder's write, before its lease"
    );
    assert_eq!(taken.owner(), rival.config().owner());
    assert!(taken.rvn() > first_rvn);
    let info = rival.get(&name).await.unwrap().unwrap();
    assert_eq!(
        (info.owner.as_str(), info.rvn),
        (taken.owner(), taken.rvn())
    );
    taken.release().await.unwrap();
}

/// While the holder heartbeats, a rival waiting three leases gets nothing; once the
/// holder releases, the rival gets the lock at its next poll.
#[tokio::test]
async fn a_live_holder_is_never_taken_over() {
    let name = unique("live");
    // Heartbeats every tenth of the lease: one may come late by most of a lease on
    // a loaded machine and the holder still keeps the lock.
    let lease = ms(1_500);
    let holder = client(&unique("holder"), lease, lease / 10).await;
    let rival = client(&unique("rival"), lease, lease / 10).await;

    let lock = holder.acquire(&name).await.unwrap();
    let first_rvn = lock.rvn();
    let waiting = rival
        .acquire_with(&name, &AcquireOptions::new().wait_at_most(3 * lease))
        .await;
    assert!(
        matches!(
            waiting,
            Err(Error::Timeout {
                operation: "acquire",
                ..
            })
        ),
        "{waiting:?}"
    );
    assert!(!lock.is_lost());
    assert!(lock.rvn() > first_rvn, "heartbeats moved the RVN");
    let info = holder.get(&name).await.unwrap().unwrap();
    assert_eq!(info.owner, holder.config().owner());

    lock.release().await.unwrap();
    let taken = within(WAIT_LIMIT, "the released lock", rival.acquire(&name))
        .await
        .unwrap();
    taken.release().await.unwrap();
}

/// Heartbeats renew the lock in the server, and stop once the Lock is dropped.
#[tokio::test]
async fn heartbeats_renew_the_lock_and_stop_when_it_is_dropped() {
    let name = unique("heartbeat");
    let period = ms(50);
    let holder = client(&unique("holder"), ms(400), period).await;
    let lock = holder.acquire(&name).await.unwrap();
    let first_rvn = lock.rvn();
    within(WAIT_LIMIT, "a heartbeat", async {
        while lock.rvn() == first_rvn {
            sleep(period).await;
        }
    })
    .await;
    let renewed_rvn = lock.rvn();
    assert!(renewed_rvn > first_rvn);
    let info = holder.get(&name).await.unwrap().unwrap();
    assert!(info.rvn >= renewed_rvn && !info.released);
    assert_eq!(info.lease, ms(400));

    // After the drop, a heartbeat that was already in flight may still land,
    // however late: at most one RVN change over twenty periods, where a heartbeat
    // going on would make about twenty.
    drop(lock);
    let mut seen = vec![holder.get(&name).await.unwrap().unwrap().rvn];
    for _ in 0..20 {
        sleep(period).await;
        seen.push(holder.get(&name).await.unwrap().unwrap().rvn);
    }
    seen.dedup();
    assert!(seen.len() <= 2, "heartbeats after the drop: RVNs {seen:?}");
}
