use super::memory::{at, lease_secs, World, CALLER, OTHER_ROLE};
use crate::semaphore::*;
use crate::store::Queue;

fn slot_of<'a>(owner: &'a str, slots: u32) -> SlotRequest<'a> {
    SlotRequest {
        name: "pool",
        owner,
        slots,
        lease: lease_secs(20),
        data: None,
    }
}

/// One pass, taking only a free slot (`wait_timeout => '0'`).
fn try_slot(world: &mut World, owner: &str, slots: u32) -> Option<Slot> {
    let now = world.now;
    acquire_slot(world, &slot_of(owner, slots), Some(now)).unwrap()
}

fn taken_name(slot: Option<Slot>) -> String {
    slot.expect("a slot is taken").slot_name
}

#[test]
fn slots_are_named_after_the_semaphore_counting_from_one() {
    assert_eq!(slot_name("pool", 1), "pool#1");
    assert_eq!(slot_name("a#b", 1000), "a#b#1000");
}

#[test]
fn slots_fill_from_the_lowest_and_a_full_semaphore_refuses_holding_nothing() {
    let mut world = World::new();
    for (owner, expected) in [("a", "pool#1"), ("b", "pool#2"), ("c", "pool#3")] {
        assert_eq!(taken_name(try_slot(&mut world, owner, 3)), expected);
        assert_eq!(world.locks[expected].owner, owner);
    }
    world.name_locks.clear();
    let before = world.locks.clone();
    assert_eq!(try_slot(&mut world, "d", 3), None);
    assert_eq!(world.locks, before);
    assert!(!world.holds_anything());
    assert_eq!(world.sleeps, 0, "no wait: one pass");
}

#[test]
fn a_released_slot_is_taken_at_once_lowest_first_without_its_data() {
    let mut world = World::new();
    for slot in 1..=3 {
        world.put(&slot_name("pool", slot), "old", CALLER, lease_secs(60));
    }
    for slot in [3, 2] {
        let lock = world.locks.get_mut(&slot_name("pool", slot)).unwrap();
        lock.released = true;
        lock.data = Some(b"the old holder's".to_vec());
    }
    let slot = try_slot(&mut world, "new", 3).expect("a free slot");
    assert_eq!(
        (slot.slot_name.as_str(), slot.taken_over),
        ("pool#2", false)
    );
    assert_eq!(world.locks["pool#2"].data, None, "slots pass no data on");
    let with_data = SlotRequest {
        data: Some(b"mine"),
        ..slot_of("newer", 3)
    };
    let now = world.now;
    let slot = acquire_slot(&mut world, &with_data, Some(now)).unwrap();
    assert_eq!(taken_name(slot), "pool#3");
    assert_eq!(world.locks["pool#3"].data.as_deref(), Some(&b"mine"[..]));
}

#[test]
fn without_waiting_a_silent_slot_is_taken_over_only_on_the_servers_observation() {
    let mut world = World::new();
    world.server_watches = false;
    world.put("pool#1", "dead", CALLER, lease_secs(1));
    world.advance(at(60_000));
    assert_eq!(try_slot(&mut world, "new", 1), None);
    assert_eq!(world.locks["pool#1"].owner, "dead");
    // The server saw pool#1 stand still a minute: one pass takes it over.
    world.server_watches = true;
    let slot = try_slot(&mut world, "new", 1).expect("the dead holder's slot");
    assert_eq!((slot.slot_name.as_str(), slot.taken_over), ("pool#1", true));
}

#[test]
fn slot_waiters_queued_ahead_are_served_first() {
    let mut world = World::new();
    world.queue_ahead_until(Queue::Slots("pool"), at(600));
    assert_eq!(
        try_slot(&mut world, "late", 3),
        None,
        "a free slot is theirs"
    );
    assert!(world.locks.is_empty());
    let slot = acquire_slot(&mut world, &slot_of("waiter", 3), None).unwrap();
    assert_eq!(taken_name(slot), "pool#1");
    world.assert_noticed_within_a_poll(at(600));
}

#[test]
fn waiting_takes_over_the_first_silent_slot_exactly_one_lease_after_its_last_write() {
    let mut world = World::new();
    world.now = at(300);
    world.put("pool#1", "alive", CALLER, lease_secs(1));
    world.put("pool#2", "dead", CALLER, lease_secs(2));
    // pool#1's holder heartbeats every 700 ms, pool#2's is silent.
    for beat in 1..=10u64 {
        world.scheduled.push((
            at(beat * 700),
            Box::new(|world: &mut World| {
                world.bump("pool#1");
            }),
        ));
    }
    let slot = acquire_slot(&mut world, &slot_of("waiter", 2), None)
        .unwrap()
        .expect("a slot");
    assert_eq!((slot.slot_name.as_str(), slot.taken_over), ("pool#2", true));
    assert_eq!(
        world.now,
        at(2300),
        "not a moment before pool#2's lease, nor a poll after"
    );
    assert_eq!(world.locks["pool#1"].owner, "alive");
}

#[test]
fn another_roles_silent_slot_is_taken_over_when_the_server_saw_its_lease_run_out() {
    let mut world = World::new();
    world.put("pool#1", "dead", OTHER_ROLE, lease_secs(2)); // the server sees it at 0
    world.advance(at(300));
    let slot = acquire_slot(&mut world, &slot_of("waiter", 1), None)
        .unwrap()
        .expect("a slot");
    assert!(slot.taken_over);
    assert_eq!(world.now, at(2000));
    // Without the server's watch, it stays refused: no busy loop meanwhile.
    let mut world = World::new();
    world.server_watches = false;
    world.put("pool#1", "dead", OTHER_ROLE, lease_secs(2));
    let ended = acquire_slot(&mut world, &slot_of("waiter", 1), Some(at(6000))).unwrap();
    assert_eq!(ended, None);
    assert!(world.sleeps < 80, "no busy loop: {}", world.sleeps);
}

#[test]
fn a_slot_freed_while_waiting_is_taken_within_one_poll() {
    let mut world = World::new();
    world.put("pool#1", "a", OTHER_ROLE, lease_secs(60));
    world.put("pool#2", "b", OTHER_ROLE, lease_secs(60));
    world.scheduled.push((
        at(1234),
        Box::new(|world: &mut World| drop(world.locks.remove("pool#2"))),
    ));
    let slot = acquire_slot(&mut world, &slot_of("waiter", 2), None)
        .unwrap()
        .expect("a slot");
    assert_eq!(
        (slot.slot_name.as_str(), slot.taken_over),
        ("pool#2", false)
    );
    world.assert_noticed_within_a_poll(at(1234));
}

#[test]
fn the_deadline_ends_the_wait_holding_nothing() {
    let mut world = World::new();
    world.put("pool#1", "a", OTHER_ROLE, lease_secs(60));
    world.put("pool#2", "b", CALLER, lease_secs(60));
    let ended = acquire_slot(&mut world, &slot_of("waiter", 2), Some(at(750))).unwrap();
    assert_eq!(ended, None);
    assert_eq!(world.now, at(750));
    assert!(!world.holds_anything());
    assert_eq!(world.data_reads, 0, "polls read no data");
}

/// A slot another open transaction is writing is never waited on: the pass goes
/// on to the next slot, and a wait on busy slots still ends at its deadline.
#[test]
fn a_slot_being_written_by_an_open_transaction_is_skipped_not_queued_for() {
    let mut world = World::new();
    world.busy.insert("pool#1".into()); // being created, not yet committed
    let slot = try_slot(&mut world, "new", 2);
    assert_eq!(taken_name(slot), "pool#2");

    let mut world = World::new();
    world.put("pool#1", "dead", CALLER, lease_secs(1));
    world.busy.insert("pool#1".into());
    world.busy.insert("pool#2".into());
    let ended = acquire_slot(&mut world, &slot_of("waiter", 2), Some(at(3000))).unwrap();
    assert_eq!(ended, None);
    assert_eq!(world.now, at(3000));
    assert!(!world.holds_anything());
}

/// Two callers see slot 1 free at once; the other one's insert wins, and this
/// caller goes on to slot 2 in the same pass.
#[test]
fn losing_the_race_for_a_free_slot_moves_on_to_the_next() {
    let mut world = World::new();
    world.after_reads.push_back(Box::new(|world: &mut World| {
        world.put("pool#1", "rival", OTHER_ROLE, lease_secs(20));
    }));
    let slot = try_slot(&mut world, "me", 3);
    assert_eq!(taken_name(slot), "pool#2");
    assert_eq!(world.locks["pool#1"].owner, "rival");
    assert!(
        !world.is_name_locked("pool#1"),
        "the lost slot's name was given back"
    );
}

/// The count is each caller's: three holders by a count of 3, then a caller
/// counting 5 takes slot 4, while one counting 3 still finds the semaphore full.
#[test]
fn callers_with_different_slot_counts_each_look_only_at_their_own_count() {
    let mut world = World::new();
    for owner in ["a", "b", "c"] {
        try_slot(&mut world, owner, 3).expect("a slot");
    }
    assert_eq!(taken_name(try_slot(&mut world, "d", 5)), "pool#4");
    assert_eq!(try_slot(&mut world, "e", 3), None);
    assert_eq!(taken_name(try_slot(&mut world, "f", 5)), "pool#5");
    assert_eq!(try_slot(&mut world, "g", 5), None);
    assert_eq!(world.locks.len(), 5);
}

#[test]
fn the_same_owner_takes_a_second_slot_like_anyone_else() {
    let mut world = World::new();
    assert_eq!(taken_name(try_slot(&mut world, "w", 2)), "pool#1");
    assert_eq!(taken_name(try_slot(&mut world, "w", 2)), "pool#2");
    assert_eq!(try_slot(&mut world, "w", 2), None);
}
