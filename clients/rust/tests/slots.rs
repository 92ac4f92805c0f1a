//! Semaphores from the client: at most `slots` holders at once, each holding a
//! slot that is renewed and released like any lock, and a dead holder's slot
//! taken over only after its lease.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    client, client_with, client_without_reconnect, join_failing_fast, kill_connection, ms,
    superuser, unique, within, WAIT_LIMIT,
};
use pglock_client::{
    AcquireOptions, ArgumentError, ClientConfig, ConfigError, Error, StatementMode, MAX_SLOTS,
};
use tokio::time::{sleep, Instant};

/// Who holds which slot, as the test's clients report it, and the most
/// holders seen at once.
#[derive(Default)]
struct Holders {
    by_slot: Mutex<HashMap<String, String>>,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Holders {
    fn enter(&self, slot: &str, owner: &str) {
        let previous = self
            .by_slot
            .lock()
            .unwrap()
            .insert(slot.to_owned(), owner.to_owned());
        assert_eq!(previous, None, "{owner} took {slot} while it was held");
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self, slot: &str) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.by_slot.lock().unwrap().remove(slot);
    }
}

/// Slots of `name` the server shows held (not released), by `pglock_locks`.
async fn held_in_server(name: &str) -> i64 {
    superuser()
        .await
        .query_one(
            "SELECT count(*) FROM pglock_locks WHERE name LIKE $1 || '#%' AND NOT released",
            &[&name],
        )
        .await
        .expect("read pglock_locks")
        .get(0)
}

/// Eight clients, three rounds each, on a semaphore of three slots: no slot is
/// ever held by two of them at once, never more than three hold one, three do
/// at once (the first round's holders wait for it), each holder's slot is its
/// own in the server, and every client is served every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_slots_eight_clients_never_more_than_three_holders() {
    const SLOTS: u32 = 3;
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 3;
    let name = unique("semaphore");
    let holders = Arc::new(Holders::default());
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let (name, holders) = (name.clone(), Arc::clone(&holders));
        workers.push(tokio::spawn(async move {
            let owner = unique(&format!("slot-worker-{worker}"));
            let config =
                ClientConfig::new(owner.as_str(), ms(5_000), ms(1_000)).with_poll_interval(ms(50));
            let client = client_with(config).await;
            for round in 0..ROUNDS {
                let lock = within(WAIT_LIMIT, "a slot", client.acquire_slot(&name, SLOTS))
                    .await
                    .unwrap_or_else(|error| panic!("acquire_slot: {error}"));
                let slot = lock.name().to_owned();
                assert!(
                    (1..=SLOTS).any(|k| slot == format!("{name}#{k}")),
                    "{slot} is not a slot of {name}"
                );
                holders.enter(&slot, &owner);
                let info = client.get(&slot).await.unwrap().expect("the slot's row");
                assert_eq!(
                    (info.owner.as_str(), info.released),
                    (owner.as_str(), false)
                );
                let in_server = held_in_server(&name).await;
                assert!(in_server <= i64::from(SLOTS), "{in_server} slots held");
                if round == 0 {
                    // The first holders stay until three hold at once: slots are
                    // free, so three of the eight get one.
                    within(WAIT_LIMIT, "three holders at once", async {
                        while holders.most.load(Ordering::SeqCst) < SLOTS as usize {
                            sleep(ms(10)).await;
                        }
                    })
                    .await;
                }
                sleep(ms(30)).await;
                holders.leave(&slot);
                lock.release()
                    .await
                    .unwrap_or_else(|error| panic!("release {slot}: {error}"));
            }
            ROUNDS
        }));
    }
    let served = join_failing_fast(workers).await;
    assert_eq!(served, vec![ROUNDS; CLIENTS]);
    assert_eq!(holders.most.load(Ordering::SeqCst), SLOTS as usize);
    assert_eq!(held_in_server(&name).await, 0, "every slot released");
}

/// Two slots: one holder's client dies (its connection killed, so nothing
/// renews its slot), the other lives. A waiter's tries half a lease on are
/// refused, and the dead slot is still the dead holder's in the server; the
/// waiting acquire then takes the dead slot over, not the live one, no sooner
/// than one lease after the dead holder's last write.
#[tokio::test]
async fn a_dead_holders_slot_is_taken_over_only_after_its_lease() {
    const LEASE: Duration = Duration::from_millis(2_000);
    let name = unique("dead-slot");
    let dead_owner = unique("dead");
    let dead = client_without_reconnect(&dead_owner, LEASE, ms(200)).await;
    let live = client(&unique("live"), LEASE, ms(200)).await;
    let waiter_config =
        ClientConfig::new(unique("waiter"), ms(1_000), ms(250)).with_poll_interval(ms(50));
    let waiter = client_with(waiter_config).await;

    let acquire_sent = Instant::now();
    let dead_lock = dead.acquire_slot(&name, 2).await.unwrap();
    let live_lock = live.acquire_slot(&name, 2).await.unwrap();
    assert_eq!(
        (dead_lock.name(), live_lock.name()),
        (format!("{name}#1").as_str(), format!("{name}#2").as_str())
    );
    kill_connection(&dead_owner).await;
    // Its last renewal, if one was in flight, is over once its RVN stops.
    let dead_rvn = within(WAIT_LIMIT, "the dead holder's RVN to stand still", async {
        loop {
            let before = waiter.get(dead_lock.name()).await.unwrap().unwrap().rvn;
            sleep(ms(500)).await;
            let after = waiter.get(dead_lock.name()).await.unwrap().unwrap().rvn;
            if before == after {
                return after;
            }
        }
    })
    .await;

    let first_seen = Instant::now();
    let first = waiter.try_acquire_slot(&name, 2).await.unwrap();
    assert!(first.is_none(), "both slots are held: {first:?}");
    sleep(LEASE / 2).await;
    let early = waiter.try_acquire_slot(&name, 2).await.unwrap();
    assert!(first_seen.elapsed() < LEASE, "the early try came late");
    assert!(early.is_none(), "taken half a lease in: {early:?}");
    let info = waiter.get(dead_lock.name()).await.unwrap().unwrap();
    assert_eq!(
        (info.owner.as_str(), info.rvn),
        (dead_owner.as_str(), dead_rvn)
    );

    let taken = within(WAIT_LIMIT, "the takeover", waiter.acquire_slot(&name, 2))
        .await
        .unwrap();
    // Not before a lease after the dead holder's last write, which came no
    // earlier than its acquire.
    let since_acquire = acquire_sent.elapsed();
    assert!(
        since_acquire >= LEASE,
        "took the slot over {since_acquire:?} after its acquire"
    );
    assert_eq!(taken.name(), dead_lock.name(), "the dead holder's slot");
    assert!(taken.rvn() > dead_rvn);
    let info = waiter.get(taken.name()).await.unwrap().unwrap();
    assert_eq!(info.owner, waiter.config().owner());
    assert!(!live_lock.is_lost());
    let live_info = waiter.get(live_lock.name()).await.unwrap().unwrap();
    assert_eq!(live_info.owner, live.config().owner());
    assert!(dead_lock.is_lost(), "its renewals failed past its deadline");

    taken.release().await.unwrap();
    live_lock.release().await.unwrap();
}

/// A slot, sent as unnamed statements, carries the data given (not the previous
/// holder's), is renewed by the client's renewer like any lock, and its release
/// frees it for the next try at once.
#[tokio::test]
async fn a_slot_is_renewed_and_released_like_any_lock() {
    let name = unique("renewed-slot");
    let config = ClientConfig::new(unique("first"), ms(2_000), ms(200))
        .with_statements(StatementMode::Unnamed);
    let first = client_with(config).await;
    let second = client(&unique("second"), ms(2_000), ms(200)).await;

    let options = AcquireOptions::new().data(b"first".to_vec());
    let lock = first.acquire_slot_with(&name, 1, &options).await.unwrap();
    assert_eq!(lock.data(), Some(&b"first"[..]));
    let rvn = lock.rvn();
    within(WAIT_LIMIT, "a renewal", async {
        while lock.rvn() == rvn {
            assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
            sleep(ms(20)).await;
        }
    })
    .await;
    let info = first.get(lock.name()).await.unwrap().unwrap();
    assert_eq!(info.rvn, lock.rvn());
    assert!(second.try_acquire_slot(&name, 1).await.unwrap().is_none());

    lock.release_keeping(Some(b"left")).await.unwrap();
    let next = second
        .try_acquire_slot(&name, 1)
        .await
        .unwrap()
        .expect("the released slot, at once");
    assert_eq!(next.name(), format!("{name}#1"));
    let info = second.get(next.name()).await.unwrap().unwrap();
    assert_eq!(info.data, None, "a slot passes no data on");
    next.release().await.unwrap();
}

/// Slot counts the server would refuse are refused before anything is sent.
#[tokio::test]
async fn slot_counts_outside_one_to_a_thousand_are_refused() {
    let client = client(&unique("counts"), ms(2_000), ms(200)).await;
    let name = unique("counts");
    fn refused<T>(result: &Result<T, Error>, slots: u32) -> bool {
        matches!(
            result,
            Err(Error::Config(ConfigError::Argument(ArgumentError::SlotsOutOfRange {
                argument: "slots",
                slots: n,
            }))) if *n == i64::from(slots)
        )
    }
    for slots in [0, MAX_SLOTS + 1] {
        let tried = client.try_acquire_slot(&name, slots).await;
        assert!(refused(&tried, slots), "{tried:?}");
        let waited = client.acquire_slot(&name, slots).await;
        assert!(refused(&waited, slots), "{waited:?}");
    }
    assert_eq!(client.get(&format!("{name}#1")).await.unwrap(), None);
    let most = client.try_acquire_slot(&name, MAX_SLOTS).await.unwrap();
    let lock = most.expect("a free slot of a thousand");
    assert_eq!(lock.name(), format!("{name}#1"));
    lock.release().await.unwrap();
}
