//! Losing a lock mid-work: the loss signal fires, and `with_lock` reports it.

mod common;

use std::time::Duration;

use common::{
    bump_rvn, client, client_without_reconnect, kill_connection, ms, superuser, unique, within,
    WAIT_LIMIT,
};
use pglock_client::{Error, LostReason};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout, Instant};

/// What the work inside `with_lock` saw.
#[derive(Debug, PartialEq)]
enum Work {
    SawLoss(Instant),
    RanOut,
}

/// Work that tells when it holds the lock, then waits for the loss signal.
async fn wait_for_loss(
    lost: pglock_client::CancellationToken,
    holding: oneshot::Sender<()>,
) -> Work {
    holding.send(()).expect("the test waits");
    tokio::select! {
        _ = lost.cancelled() => Work::SawLoss(Instant::now()),
        _ = sleep(Duration::from_secs(10)) => Work::RanOut,
    }
}

/// A rival moves the RVN on behind the holder's back (as a takeover does): the next
/// heartbeat raises 55000 and the work sees the signal; `with_lock` fails.
#[tokio::test]
async fn with_lock_sees_a_takeover() {
    let name = unique("taken");
    let holder = client(&unique("holder"), ms(2_000), ms(100)).await;
    let (holding, held) = oneshot::channel();
    let work = holder.with_lock(&name, |lost| wait_for_loss(lost, holding));
    let rival = async {
        held.await.unwrap();
        bump_rvn(&name).await;
    };
    let (outcome, ()) = within(WAIT_LIMIT, "the loss", async { tokio::join!(work, rival) }).await;
    match outcome {
        Err(Error::LockLost {
            name: lost_name,
            reason: LostReason::NotHeld,
        }) => assert_eq!(lost_name, name),
        other => panic!("expected the loss, got {other:?}"),
    }
    let info = holder
        .get(&name)
        .await
        .unwrap()
        .expect("the rival's lock stays");
    assert!(!info.released);
}

/// The holder's connection dies mid-work and cannot be replaced: its heartbeats
/// fail, and the work is told the lock is lost before a rival (which starts
/// waiting after the failure) takes it over. (The rival may take it sooner than
/// a lease after it began to wait: the server saw the holder's last renewal.
/// A client that reconnects keeps the lock: see `reconnect.rs`.)
#[tokio::test]
async fn the_work_learns_of_failing_heartbeats_before_a_rival_takes_over() {
    let name = unique("silent");
    let holder_name = unique("holder");
    let lease = ms(1_000);
    let holder = client_without_reconnect(&holder_name, lease, ms(300)).await;
    let rival = client(&unique("rival"), ms(300), ms(100)).await;
    let (holding, held) = oneshot::channel();
    let (saw, seen) = oneshot::channel();
    let work = holder.with_lock(&name, |lost| async move {
        let work = wait_for_loss(lost, holding).await;
        saw.send(work).expect("the test waits");
    });
    let rival = async {
        held.await.unwrap();
        kill_connection(&holder_name).await;
        let lock = within(WAIT_LIMIT, "the takeover", rival.acquire(&name))
            .await
            .unwrap();
        (Instant::now(), lock)
    };
    let (outcome, (taken_at, lock)) = within(WAIT_LIMIT, "the loss and the takeover", async {
        tokio::join!(work, rival)
    })
    .await;
    assert!(
        matches!(
            outcome,
            Err(Error::LockLost {
                reason: LostReason::HeartbeatsFailed { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    match seen.await.unwrap() {
        Work::SawLoss(at) => assert!(at < taken_at, "the rival took over before the loss"),
        Work::RanOut => panic!("the work never saw the loss"),
    }
    lock.release().await.unwrap();
}

/// The same, without `with_lock`: the Lock's own signal and reason, and the order of
/// loss and takeover as seen from one task.
#[tokio::test]
async fn a_lock_reports_loss_before_its_lease_could_run_out() {
    let name = unique("order");
    let holder_name = unique("holder");
    let holder = client_without_reconnect(&holder_name, ms(1_000), ms(300)).await;
    let rival = client(&unique("rival"), ms(1_000), ms(300)).await;
    let lock = holder.acquire(&name).await.unwrap();
    kill_connection(&holder_name).await;

    let taking_over = tokio::spawn(async move {
        let lock = within(WAIT_LIMIT, "the takeover", rival.acquire(&name))
            .await
            .unwrap();
        (Instant::now(), lock)
    });
    timeout(ms(5_000), lock.lost()).await.expect("lost in time");
    let lost_at = Instant::now();
    assert!(lock.is_lost());
    assert!(matches!(
        lock.lost_reason(),
        Some(LostReason::HeartbeatsFailed {
            last_error: Some(_)
        })
    ));
    let (taken_at, taken) = within(WAIT_LIMIT, "the takeover", taking_over)
        .await
        .unwrap();
    assert!(
        lost_at < taken_at,
        "the rival took over before the loss was seen"
    );
    taken.release().await.unwrap();
}

/// Another role takes the lock (as the server records it): the next heartbeat
/// does not renew it, the lock is lost at once, and the lookup that follows
/// tells why.
#[tokio::test]
async fn a_lock_held_by_another_role_is_lost() {
    let name = unique("role");
    let holder = client(&unique("holder"), ms(2_000), ms(100)).await;
    let lock = holder.acquire(&name).await.unwrap();
    superuser()
        .await
        .execute(
            "UPDATE pglock.locks SET holder_role = 'pglock_user'::regrole WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    timeout(ms(5_000), lock.lost()).await.expect("lost in time");
    // NotHeld with the reply, then narrowed once the row has been read.
    within(WAIT_LIMIT, "the reason to name the other role", async {
        while lock.lost_reason() != Some(LostReason::HeldByOtherRole) {
            assert_eq!(lock.lost_reason(), Some(LostReason::NotHeld));
            sleep(ms(10)).await;
        }
    })
    .await;
}

/// Releasing a lock that was taken over fails with the loss; the rival's row stays.
#[tokio::test]
async fn releasing_a_taken_over_lock_reports_the_loss() {
    let name = unique("release");
    let holder = client(&unique("holder"), ms(2_000), ms(500)).await;
    let lock = holder.acquire(&name).await.unwrap();
    bump_rvn(&name).await;
    let released = lock.release().await;
    assert!(
        matches!(
            released,
            Err(Error::LockLost {
                reason: LostReason::NotHeld,
                ..
            })
        ),
        "{released:?}"
    );
    assert!(holder.get(&name).await.unwrap().is_some());
}
