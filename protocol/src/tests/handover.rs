//! A release hands the lock to the first waiter queued for it, in the same
//! write, and the waiter finds it its own.

use super::memory::{lease_secs, World, CALLER, OTHER_ROLE};
use super::requests::{acquire_of, release_of};
use crate::lock::{Heir, RoleId};
use crate::steps::{acquire, release, AcquireRequest, ReleaseRequest};
use crate::store::Queue;

fn heir(owner: &str, role: RoleId, data: Option<&[u8]>) -> Heir {
    Heir {
        owner: owner.to_owned(),
        lease: lease_secs(7),
        role,
        data: data.map(<[u8]>::to_vec),
        replace_data: false,
        ticket: 42,
    }
}

/// `name` held by "holder" of the caller's role, with `data`, and `heir` queued.
fn held_with_heir(world: &mut World, data: Option<&[u8]>, waiting: Heir) -> i64 {
    let rvn = world.put("job", "holder", CALLER, lease_secs(60));
    world.locks.get_mut("job").unwrap().data = data.map(<[u8]>::to_vec);
    world.heirs.insert("job".into(), waiting);
    rvn
}

#[test]
fn a_release_hands_the_lock_to_the_first_waiter_with_a_new_rvn() {
    let mut world = World::new();
    let rvn = held_with_heir(&mut world, None, heir("next", OTHER_ROLE, Some(b"its own")));
    assert_eq!(
        release(&mut world, &release_of("job", "holder", rvn)),
        Ok(true)
    );
    let lock = &world.locks["job"];
    assert_eq!(
        (
            lock.owner.as_str(),
            lock.holder_role,
            lock.released,
            lock.lease
        ),
        ("next", OTHER_ROLE, false, lease_secs(7))
    );
    assert!(lock.rvn > rvn);
    assert_eq!(lock.data.as_deref(), Some(&b"its own"[..]));
    assert_eq!(world.handed, [(42, lock.rvn)]);
}

/// keep, the heir's role, the data released with, the heir's own -> stored.
type DataCase = (
    bool,
    RoleId,
    Option<&'static [u8]>,
    Option<&'static [u8]>,
    Option<&'static [u8]>,
);

#[test]
fn the_heir_gets_the_data_its_own_acquire_would_have() {
    let cases: [DataCase; 5] = [
        (true, CALLER, Some(b"checkpoint"), None, Some(b"checkpoint")),
        (true, CALLER, None, None, Some(b"had")),
        (true, CALLER, None, Some(b"mine"), Some(b"mine")),
        (true, OTHER_ROLE, Some(b"checkpoint"), None, None),
        (false, CALLER, None, None, None),
    ];
    for (keep, role, released_with, heirs, stored) in cases {
        let mut world = World::new();
        let rvn = held_with_heir(&mut world, Some(b"had"), heir("next", role, heirs));
        let request = ReleaseRequest {
            keep,
            data: released_with,
            ..release_of("job", "holder", rvn)
        };
        assert_eq!(release(&mut world, &request), Ok(true));
        assert_eq!(
            world.locks["job"].data.as_deref(),
            stored,
            "keep {keep}, {role:?}, released with {released_with:?}, heir's {heirs:?}"
        );
    }
}

#[test]
fn a_release_by_someone_not_holding_the_lock_hands_nothing_over() {
    let mut world = World::new();
    let rvn = held_with_heir(&mut world, None, heir("next", CALLER, None));
    let before = world.locks.clone();
    assert_eq!(
        release(&mut world, &release_of("job", "holder", rvn + 1)),
        Ok(false)
    );
    assert_eq!(world.locks, before);
    assert!(world.handed.is_empty());
    assert!(!world.holds_anything());
}

#[test]
fn the_heir_finds_the_lock_handed_over_its_own_and_only_once_it_is_visible() {
    let mut world = World::new();
    let request = AcquireRequest {
        lease: lease_secs(7),
        ..acquire_of("job", "next")
    };
    // Handed over at RVN 9, not committed yet: the lock still shows its holder.
    let rvn = world.put("job", "holder", CALLER, lease_secs(60));
    world.handed_to_caller.insert("job".into(), rvn + 1);
    let refused = acquire(&mut world, &request).unwrap().unwrap();
    assert!(!refused.acquired);
    // Committed: the heir's next attempt has it, without a write of its own.
    let handed = world.next_rvn_of("job");
    let lock = world.locks.get_mut("job").unwrap();
    (lock.owner, lock.rvn, lock.data) = ("next".into(), handed, Some(b"x".to_vec()));
    let rvns_before = world.last_rvn;
    world.handed_to_caller.insert("job".into(), handed);
    let taken = acquire(&mut world, &request).unwrap().unwrap();
    assert!(taken.acquired && !taken.taken_over);
    assert_eq!(
        (taken.rvn, taken.data.as_deref()),
        (handed, Some(&b"x"[..]))
    );
    assert_eq!(world.last_rvn, rvns_before, "no RVN drawn: nothing written");
    assert!(!world.holds_anything());
}

#[test]
fn a_plain_acquire_of_a_semaphores_slot_does_not_jump_the_semaphores_waiters() {
    let mut world = World::new();
    world.queue_ahead_until(Queue::Slots("pool"), super::memory::at(60_000));
    assert_eq!(
        acquire(&mut world, &acquire_of("pool#2", "jumper")).unwrap(),
        None
    );
    assert!(world.locks.is_empty());
    // Another lock's name that merely looks like one is its own.
    assert!(
        acquire(&mut world, &acquire_of("pool#02", "w"))
            .unwrap()
            .unwrap()
            .acquired
    );
}
