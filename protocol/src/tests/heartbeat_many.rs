use super::memory::{lease_secs, World, CALLER, OTHER_ROLE};
use crate::lock::Lock;
use crate::steps::*;
use crate::store::Store;

fn renew(world: &mut World, locks: &[(&str, i64)]) -> Vec<Option<i64>> {
    heartbeat_many(world, "w", locks, None)
}

/// A lock `w` holds for each of `names`: each name with its RVN.
fn held_by_w<'a>(
    world: &mut World,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, i64)> {
    names
        .into_iter()
        .map(|name| (name, world.put(name, "w", CALLER, lease_secs(20))))
        .collect()
}

#[test]
fn each_held_lock_is_renewed_and_answers_come_in_the_order_given() {
    let mut world = World::new();
    let c = world.put("c", "w", CALLER, lease_secs(20));
    let a = world.put("a", "w", CALLER, lease_secs(20));
    let b = world.put("b", "w", CALLER, lease_secs(20));
    world.locks.get_mut("b").unwrap().data = Some(b"checkpoint".to_vec());
    let renewed = heartbeat_many(&mut world, "w", &[("c", c), ("a", a), ("b", b)], None);
    let current: Vec<Option<i64>> = ["c", "a", "b"]
        .iter()
        .map(|name| Some(world.locks[*name].rvn))
        .collect();
    assert_eq!(renewed, current);
    assert!(renewed[0] > Some(c) && renewed[1] > Some(a) && renewed[2] > Some(b));
    assert_eq!(world.locks["b"].data.as_deref(), Some(&b"checkpoint"[..]));
    assert_eq!(
        world.locks["a"].lease,
        lease_secs(20),
        "no lease given: kept"
    );
}

#[test]
fn a_lease_given_replaces_every_renewed_locks_lease() {
    let mut world = World::new();
    let a = world.put("a", "w", CALLER, lease_secs(20));
    let b = world.put("b", "w", CALLER, lease_secs(5));
    heartbeat_many(
        &mut world,
        "w",
        &[("a", a), ("b", b)],
        Some(&lease_secs(90)),
    );
    assert_eq!(world.locks["a"].lease, lease_secs(90));
    assert_eq!(world.locks["b"].lease, lease_secs(90));
}

#[test]
fn locks_the_caller_does_not_hold_answer_none_and_are_left_alone() {
    let mut world = World::new();
    let held = world.put("held", "w", CALLER, lease_secs(20));
    let moved = world.put("moved", "w", CALLER, lease_secs(20));
    world.bump("moved");
    let theirs = world.put("theirs", "w", OTHER_ROLE, lease_secs(20));
    let other_owner = world.put("other-owner", "x", CALLER, lease_secs(20));
    let released = world.put("released", "w", CALLER, lease_secs(20));
    world.locks.get_mut("released").unwrap().released = true;
    let before: Vec<(String, Lock)> = world
        .locks
        .iter()
        .filter(|(name, _)| name.as_str() != "held")
        .map(|(name, lock)| (name.clone(), lock.clone()))
        .collect();
    let renewed = renew(
        &mut world,
        &[
            ("moved", moved),
            ("theirs", theirs),
            ("missing", 3),
            ("held", held),
            ("other-owner", other_owner),
            ("released", released),
        ],
    );
    assert_eq!(
        renewed,
        [None, None, None, Some(world.locks["held"].rvn), None, None]
    );
    for (name, lock) in before {
        assert_eq!(world.locks[&name], lock, "{name} untouched");
    }
    assert!(!world.holds_anything());
}

/// Name locks are taken one at a time in the store's key order (so calls over
/// overlapping names cannot deadlock) and each is given back after its write.
#[test]
fn names_are_locked_in_key_order_and_none_is_held_afterwards() {
    let mut world = World::new();
    let names: Vec<String> = (0..50).map(|n| format!("shard-{n}")).collect();
    let locks = held_by_w(&mut world, names.iter().map(String::as_str));
    let renewed = renew(&mut world, &locks);
    assert!(renewed.iter().all(Option::is_some));
    assert!(
        world.name_locks.values().all(|count| *count == 0),
        "{:?}",
        world.name_locks
    );
    let written = names
        .iter()
        .map(String::as_str)
        .zip(renewed.iter().map(|rvn| rvn.expect("renewed")));
    assert!(world.written_in_key_order(written));
}

/// A takeover of one of the names commits while the call is busy with the ones
/// before it in key order: that one answers None, the rest are renewed.
#[test]
fn a_takeover_committed_before_its_names_turn_loses_only_that_lock() {
    let mut world = World::new();
    let names = ["a", "b", "c", "d"];
    let locks = held_by_w(&mut world, names);
    let mut in_key_order = names.to_vec();
    in_key_order.sort_by_key(|name| world.name_lock_key(name));
    let third = in_key_order[2];
    for _ in 0..2 {
        world
            .after_name_locks
            .push_back(Box::new(|_: &mut World| {}));
    }
    world
        .after_name_locks
        .push_back(Box::new(move |world: &mut World| {
            world.put(third, "thief", CALLER, lease_secs(20));
        }));
    let renewed = renew(&mut world, &locks);
    for (name, rvn) in names.iter().zip(&renewed) {
        assert_eq!(rvn.is_some(), *name != third, "{name}: {rvn:?}");
    }
    assert_eq!(world.locks[third].owner, "thief");
}

#[test]
fn renewed_rvns_grow_past_a_rewound_sequence() {
    let mut world = World::new();
    let a = world.put("a", "w", CALLER, lease_secs(20));
    world.last_rvn += 1000;
    let b = world.put("b", "w", CALLER, lease_secs(20));
    world.last_rvn = 1;
    let renewed = renew(&mut world, &[("a", a), ("b", b)]);
    assert!(renewed[0] > Some(a) && renewed[1] > Some(b), "{renewed:?}");
    assert!(world.last_rvn >= b);
}

#[test]
fn nothing_given_is_nothing_done() {
    let mut world = World::new();
    world.put("a", "w", CALLER, lease_secs(20));
    let (before, sequence) = (world.locks.clone(), world.last_rvn);
    assert_eq!(renew(&mut world, &[]), Vec::<Option<i64>>::new());
    assert_eq!((world.locks.clone(), world.last_rvn), (before, sequence));
    assert!(!world.holds_anything());
}

#[test]
fn ten_thousand_locks_are_renewed_holding_no_name_lock_at_the_end() {
    let mut world = World::new();
    let names: Vec<String> = (0..10_000).map(|n| format!("tenant-{n}")).collect();
    let locks = held_by_w(&mut world, names.iter().map(String::as_str));
    let renewed = renew(&mut world, &locks);
    assert_eq!(renewed.iter().filter(|rvn| rvn.is_some()).count(), 10_000);
    assert!(!world.holds_anything());
}
