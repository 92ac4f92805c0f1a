//! Semaphores over real connections: N clients on a K-slot semaphore never hold
//! more than K slots at once (and no slot twice); a dead holder's slot is taken
//! over after its lease, never before, while a live holder keeps its slot; a
//! slot being taken by an open transaction is skipped, and a wait for a full
//! semaphore never queues behind one.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{connect, heartbeat, join_all, release, unique_name, Client, WAIT_LIMIT};

/// `(slot_name, rvn)` if a slot was taken.
fn acquire_slot(
    client: &mut impl postgres::GenericClient,
    name: &str,
    owner: &str,
    slots: i32,
    lease: &str,
    wait_timeout: &str,
) -> Option<(String, i64)> {
    let row = client
        .query_one(
            "SELECT acquired, slot_name, rvn FROM pglock_acquire_slot($1, $2, $3, \
                    $4::text::interval, wait_timeout => $5::text::interval)",
            &[&name, &owner, &slots, &lease, &wait_timeout],
        )
        .unwrap();
    let acquired: bool = row.get(0);
    let slot: Option<String> = row.get(1);
    let rvn: Option<i64> = row.get(2);
    assert_eq!(acquired, slot.is_some(), "{slot:?}");
    assert_eq!(acquired, rvn.is_some(), "{rvn:?}");
    slot.zip(rvn)
}

const SLOTS: usize = 3;
const CLIENTS: usize = 12;
const ROUNDS: usize = 15;

/// Twelve clients take a slot of three, work a moment, release it, fifteen
/// times each.  Whoever holds a slot marks it in a shared table of slots: no
/// slot is ever marked twice, so at most three clients ever hold one at once.
#[test]
fn twelve_clients_on_a_three_slot_semaphore_never_exceed_three_holders() {
    let name = unique_name("semaphore");
    // holders[slot] = the client holding it; most = the largest count seen.
    let holders: Arc<Mutex<(Vec<Option<usize>>, usize)>> =
        Arc::new(Mutex::new((vec![None; SLOTS], 0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client_number| {
            let (name, holders) = (name.clone(), holders.clone());
            thread::spawn(move || {
                let mut client = connect();
                let owner = format!("client-{client_number}");
                let mut taken = 0;
                while taken < ROUNDS {
                    let Some((slot, rvn)) =
                        acquire_slot(&mut client, &name, &owner, SLOTS as i32, "1 minute", "5 s")
                    else {
                        continue;
                    };
                    let index: usize = slot.rsplit('#').next().unwrap().parse().unwrap();
                    {
                        let mut state = holders.lock().unwrap();
                        let (slots, most) = &mut *state;
                        assert_eq!(slots[index - 1], None, "{slot} taken while held");
                        slots[index - 1] = Some(client_number);
                        let now_holding = slots.iter().flatten().count();
                        *most = (*most).max(now_holding);
                        assert!(now_holding <= SLOTS);
                    }
                    thread::sleep(Duration::from_millis(3 + (client_number as u64 * 7) % 11));
                    holders.lock().unwrap().0[index - 1] = None;
                    assert!(release(&mut client, &slot, &owner, rvn, false).unwrap());
                    taken += 1;
                }
            })
        })
        .collect();
    join_all("semaphore clients", clients, WAIT_LIMIT * 4);
    let most = holders.lock().unwrap().1;
    assert_eq!(most, SLOTS, "the semaphore was full at times");
}

/// Two holders fill a two-slot semaphore: one keeps heartbeating, one dies.  A
/// waiter gets the dead one's slot one lease after its last write, not before,
/// and never the live one's.
#[test]
fn a_dead_holders_slot_is_taken_over_after_its_lease_never_a_live_ones() {
    let name = unique_name("semaphore-dead");
    let lease = Duration::from_secs(2);
    let mut alive = connect();
    let (alive_slot, mut alive_rvn) =
        acquire_slot(&mut alive, &name, "alive", 2, "2 s", "0").unwrap();
    let mut dead = connect();
    let (dead_slot, dead_rvn) = acquire_slot(&mut dead, &name, "dead", 2, "2 s", "0").unwrap();
    let dead_wrote = Instant::now();
    drop(dead);

    let waiting = thread::spawn({
        let name = name.clone();
        move || {
            let mut waiter = connect();
            acquire_slot(&mut waiter, &name, "waiter", 2, "1 minute", "30 s")
        }
    });
    while !waiting.is_finished() {
        alive_rvn = heartbeat(&mut alive, &alive_slot, "alive", alive_rvn).unwrap();
        thread::sleep(Duration::from_millis(300));
    }
    let (slot, rvn) = pglock_tests::join(waiting).expect("the waiter took a slot");
    let waited = dead_wrote.elapsed();
    assert_eq!(slot, dead_slot);
    assert!(rvn > dead_rvn);
    assert!(
        waited >= lease,
        "taken over {waited:?} after the last write"
    );
    // The live holder still holds its slot.
    alive_rvn = heartbeat(&mut alive, &alive_slot, "alive", alive_rvn).unwrap();
    assert!(release(&mut alive, &alive_slot, "alive", alive_rvn, false).unwrap());
}

/// A slot another transaction is taking (not yet committed) is skipped at once,
/// and a wait on a full semaphore whose last slot is being taken ends at its
/// `wait_timeout`, however long that transaction stays open.
#[test]
fn a_slot_being_taken_by_an_open_transaction_is_skipped_and_never_queued_for() {
    let name = unique_name("semaphore-open");
    let mut opener = connect();
    let mut tx = opener.transaction().unwrap();
    let (first, _) = acquire_slot(&mut tx, &name, "opener", 2, "1 minute", "0").unwrap();
    assert_eq!(first, format!("{name}#1"));

    let mut other = connect();
    other.batch_execute("SET lock_timeout = '2s'").unwrap();
    let (second, _) = acquire_slot(&mut other, &name, "other", 2, "1 minute", "0").unwrap();
    assert_eq!(
        second,
        format!("{name}#2"),
        "slot 1 skipped, not waited for"
    );

    let start = Instant::now();
    let refused = acquire_slot(&mut other, &name, "third", 2, "1 minute", "1 s");
    let waited = start.elapsed();
    assert_eq!(refused, None);
    assert!(
        waited >= Duration::from_secs(1) && waited < WAIT_LIMIT,
        "{waited:?}"
    );
    tx.rollback().unwrap();
    // Rolled back: slot 1 is free again.
    let (again, _) = acquire_slot(&mut other, &name, "third", 2, "1 minute", "0").unwrap();
    assert_eq!(again, first);
}

/// A caller counting more slots than the others uses the slots above theirs; the
/// others never see those holders.
#[test]
fn callers_with_different_counts_each_see_only_their_own_slots() {
    let name = unique_name("semaphore-counts");
    let mut client: Client = connect();
    let mut taken = Vec::new();
    for owner in ["counts-a", "counts-b"] {
        let (slot, rvn) = acquire_slot(&mut client, &name, owner, 2, "1 minute", "0").unwrap();
        taken.push((slot, rvn, owner));
    }
    let (third, rvn) = acquire_slot(&mut client, &name, "counts-c", 3, "1 minute", "0").unwrap();
    assert_eq!(third, format!("{name}#3"));
    taken.push((third, rvn, "counts-c"));
    assert_eq!(
        acquire_slot(&mut client, &name, "counts-d", 2, "1 minute", "0"),
        None
    );
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM pglock_locks WHERE name LIKE $1 || '#%' AND NOT released",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 3);
    for (slot, rvn, owner) in taken {
        assert!(release(&mut client, &slot, owner, rvn, false).unwrap());
    }
}
