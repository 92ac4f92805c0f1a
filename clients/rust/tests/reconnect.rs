//! A lease is not a session: the client replaces a broken connection by itself,
//! keeps a lock whose heartbeat gets through on the new connection in time,
//! signals the loss when none does, and serves new calls once a server is back.
//!
//! Most tests here start a private server of their own, to restart, stop or fail
//! it over; timing margins are wide, and every wait has a deadline.

mod common;
#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use common::{kill_connection, ms, unique};
use pglock_client::{
    AcquireOptions, Client, ClientConfig, Error, Lock, LostReason, TryAcquireOutcome,
};
use server::Server;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Waits until the lock's RVN moves on from `from` (a heartbeat succeeded) or the
/// lock is lost, at most until `deadline`.
async fn next_heartbeat(lock: &Lock, from: i64, deadline: Instant) {
    while lock.rvn() == from && !lock.is_lost() {
        assert!(
            Instant::now() < deadline,
            "no heartbeat and no loss by the deadline"
        );
        sleep(ms(50)).await;
    }
}

/// The server's row agrees with the lock's RVN (read between two looks at it, as
/// a heartbeat may land in between).
async fn assert_server_has(client: &Client, lock: &Lock) {
    let before = lock.rvn();
    let info = client
        .get(lock.name())
        .await
        .expect("read the lock")
        .expect("the lock exists");
    let after = lock.rvn();
    assert!(
        info.rvn == before || info.rvn == after,
        "server has RVN {}, the lock {before}..{after}",
        info.rvn
    );
    assert_eq!(info.owner, lock.owner());
    assert!(!info.released);
}

/// Its connection is killed while the server runs: the client opens a new one at
/// the next heartbeat and the lock is kept. Against the shared test server.
#[tokio::test]
async fn a_killed_connection_is_replaced_and_the_lock_kept() {
    let owner = unique("killed");
    let client = common::client(&owner, secs(20), ms(500)).await;
    let lock = client.acquire(&unique("kept")).await.unwrap();
    kill_connection(&owner).await;
    let rvn = lock.rvn();
    next_heartbeat(&lock, rvn, Instant::now() + secs(15)).await;
    assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
    assert_eq!(client.reconnects(), 1);
    assert_server_has(&client, &lock).await;
    lock.release().await.expect("still ours: released");
}

/// `pg_ctl restart -m fast` under a held lock with a 30 s lease: a heartbeat over
/// a new connection renews it, the release proves nobody else had it, and new
/// calls work.
#[tokio::test]
async fn a_held_lock_survives_a_restart_shorter_than_its_lease() {
    let server = Server::create("client-restart", 55461, &[]).await;
    let lease = secs(30);
    let config = ClientConfig::new("holder", lease, secs(2));
    let client = Client::connect(&server.pg_config("holder"), config)
        .await
        .unwrap();
    let lock = client.acquire("survivor").await.unwrap();
    let restarting = Instant::now();
    server.restart().await;
    let took = restarting.elapsed();
    assert!(
        took < lease / 3,
        "the restart took {took:?}: too long for this test's lease"
    );
    // The old connection died with the restart: a new RVN comes over a new one.
    let rvn = lock.rvn();
    next_heartbeat(&lock, rvn, restarting + lease).await;
    assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
    assert!(client.reconnects() >= 1);
    assert_server_has(&client, &lock).await;
    lock.release().await.expect("still ours: released");

    let fresh = client.try_acquire("after-restart").await.unwrap();
    let fresh = fresh.into_lock().expect("a free lock is acquired");
    fresh.release().await.unwrap();
}

/// The server is down for longer than the lease: the loss is signalled by the
/// rule (not at the disconnect, and before the lease could have run out), calls
/// fail while it is down and work once it is back, and the client takes its own
/// lost lock over after one lease like anyone else.
#[tokio::test]
async fn a_restart_longer_than_the_lease_signals_the_loss_in_time() {
    let server = Server::create("client-outage", 55462, &[]).await;
    // Lost 6 s after the last renewal: 2 s before the lease could run out, room
    // for a busy machine's late timers.
    let (lease, period) = (secs(8), secs(2));
    let margin = period; // min(period, lease / 4)
    let config = ClientConfig::new("holder", lease, period);
    let client = Client::connect(&server.pg_config("holder"), config)
        .await
        .unwrap();
    let lock = client.acquire("outage").await.unwrap();

    let stopping = Instant::now();
    server.stop().await;
    let stopped = Instant::now();
    let down = timeout(secs(10), client.get("outage"))
        .await
        .expect("a call while the server is down returns");
    assert!(matches!(down, Err(Error::Database(_))), "{down:?}");

    // The last heartbeat that got through was sent after `stopping - 2 periods`
    // and before `stopped`; the lock is lost `lease - margin` after it.
    timeout_at(stopped + lease, lock.lost())
        .await
        .expect("the loss is signalled before the lease could run out");
    let lost_at = Instant::now();
    let earliest = stopping + lease - margin - 2 * period;
    assert!(
        lost_at >= earliest,
        "lost {:?} after the stop began: before the rule allows",
        lost_at - stopping
    );
    assert!(
        matches!(
            lock.lost_reason(),
            Some(LostReason::HeartbeatsFailed {
                last_error: Some(_)
            })
        ),
        "{:?}",
        lock.lost_reason()
    );

    sleep_until(stopping + lease + secs(1)).await;
    server.start().await;
    let info = timeout(secs(10), client.get("outage"))
        .await
        .expect("the first call after the restart returns")
        .expect("and works")
        .expect("the lock's row survived the restart");
    assert_eq!((info.owner.as_str(), info.rvn), ("holder", lock.rvn()));
    let fresh = client.try_acquire("after-outage").await.unwrap();
    assert!(matches!(fresh, TryAcquireOutcome::Acquired(_)), "{fresh:?}");

    let lost_rvn = lock.rvn();
    drop(lock);
    let options = AcquireOptions::new().wait_at_most(3 * lease);
    let again = client.acquire_with("outage", &options).await.unwrap();
    assert!(again.rvn() > lost_rvn);
    again.release().await.unwrap();
}

/// A failover by hand: the primary stops at once, its synchronous standby is
/// promoted. The client, given both servers with `target_session_attrs=read-write`,
/// is refused by the standby while it is read-only, then finds it promoted and
/// renews its lock there.
#[tokio::test]
async fn a_held_lock_follows_a_promoted_synchronous_standby() {
    let primary = Server::create("client-primary", 55463, &[]).await;
    let standby = Server::standby_of(&primary, "client-standby", 55464).await;
    // ALTER SYSTEM may not share a transaction (or a query string) with anything.
    primary
        .execute("ALTER SYSTEM SET synchronous_standby_names = 'client_standby'")
        .await;
    primary.execute("SELECT pg_reload_conf()").await;
    primary
        .wait_for_sync_standby("client-standby", secs(30))
        .await;

    let lease = secs(30);
    let cluster = Server::cluster_config(&[&primary, &standby], "holder");
    let client = Client::connect(&cluster, ClientConfig::new("holder", lease, secs(2)))
        .await
        .unwrap();
    let lock = client.acquire("follower").await.unwrap();

    let failing = Instant::now();
    primary.stop_immediately().await;
    // While only the standby runs, the client finds no server that takes writes.
    sleep(secs(3)).await;
    assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
    assert_eq!(client.reconnects(), 0, "connected to a read-only standby");
    standby.promote().await;

    let rvn = lock.rvn();
    next_heartbeat(&lock, rvn, failing + lease).await;
    assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
    assert_eq!(client.reconnects(), 1);
    assert_server_has(&client, &lock).await;
    lock.release()
        .await
        .expect("still ours on the promoted server");
}
