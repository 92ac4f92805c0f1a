use std::time::Duration;

use super::memory::{lease_secs, World, CALLER, OTHER_ROLE};
use super::requests::{acquire_of, heartbeat_of, release_of};
use crate::error::{NotHeldReason, ProtocolError};
use crate::lock::RoleId;
use crate::steps::*;
use crate::store::Fields;

/// A plain acquire, which in these tests always has a lock or a holder to show
/// (no waiters queue here).
fn acquire(
    world: &mut World,
    request: &AcquireRequest<'_>,
) -> Result<AcquireOutcome, ProtocolError> {
    Ok(crate::steps::acquire(world, request)?.expect("a lock or a holder to show"))
}

#[test]
fn a_missing_lock_is_created_under_the_name_lock() {
    let mut world = World::new();
    let outcome = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(outcome.acquired && !outcome.taken_over);
    assert_eq!(outcome.rvn, world.locks["job"].rvn);
    assert_eq!(world.locks["job"].holder_role, CALLER);
    assert!(
        world.is_name_locked("job"),
        "a write holds the name until commit"
    );
}

#[test]
fn a_refused_acquire_writes_nothing_and_holds_nothing() {
    let mut world = World::new();
    let rvn = world.put("job", "b", OTHER_ROLE, lease_secs(60));
    let before = world.locks.clone();
    let outcome = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(!outcome.acquired);
    assert_eq!((outcome.rvn, outcome.owner.as_str()), (rvn, "b"));
    assert_eq!(
        outcome.lease,
        lease_secs(60),
        "the holder's lease, to wait out"
    );
    assert_eq!(world.locks, before);
    assert!(!world.is_name_locked("job"));
}

#[test]
fn the_same_owner_is_refused_like_anyone_else() {
    let mut world = World::new();
    acquire(&mut world, &acquire_of("job", "a")).unwrap();
    let again = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(!again.acquired);
}

#[test]
fn a_takeover_needs_the_rvn_that_stood_still_and_keeps_the_data() {
    let mut world = World::new();
    let rvn = world.put("job", "b", CALLER, lease_secs(5));
    world.locks.get_mut("job").unwrap().data = Some(b"checkpoint".to_vec());
    let stale = AcquireRequest {
        observed_rvn: Some(rvn - 1),
        ..acquire_of("job", "a")
    };
    assert!(!acquire(&mut world, &stale).unwrap().acquired);
    let seen = AcquireRequest {
        observed_rvn: Some(rvn),
        ..acquire_of("job", "a")
    };
    let outcome = acquire(&mut world, &seen).unwrap();
    assert!(outcome.acquired && outcome.taken_over);
    assert!(outcome.rvn > rvn, "a takeover moves the RVN on");
    assert_eq!(outcome.data.as_deref(), Some(&b"checkpoint"[..]));
    assert_eq!(world.locks["job"].owner, "a");
}

#[test]
fn a_released_lock_is_taken_at_once_and_is_no_takeover() {
    let mut world = World::new();
    world.put("job", "b", CALLER, lease_secs(5));
    world.locks.get_mut("job").unwrap().released = true;
    let outcome = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(outcome.acquired && !outcome.taken_over);
}

#[test]
fn replace_data_stores_null_over_a_checkpoint() {
    let mut world = World::new();
    world.put("job", "b", CALLER, lease_secs(5));
    let lock = world.locks.get_mut("job").unwrap();
    lock.released = true;
    lock.data = Some(b"old".to_vec());
    let clearing = AcquireRequest {
        replace_data: true,
        ..acquire_of("job", "a")
    };
    let outcome = acquire(&mut world, &clearing).unwrap();
    assert_eq!(outcome.data, None);
    assert_eq!(world.locks["job"].data, None);
}

#[test]
fn losing_the_insert_race_refuses_and_gives_the_name_back() {
    let mut world = World::new();
    // Between our read (no lock) and our insert, another session takes the name.
    world.after_reads.push_back(Box::new(|world: &mut World| {
        world.put("job", "b", OTHER_ROLE, lease_secs(20));
    }));
    let outcome = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(!outcome.acquired);
    assert_eq!(outcome.owner, "b");
    assert_eq!(world.reads, 2, "the second pass reads under the name lock");
    assert!(
        !world.is_name_locked("job"),
        "a late refusal gives back the name lock the first pass took"
    );
}

#[test]
fn losing_the_takeover_race_to_a_heartbeat_refuses_with_the_new_rvn() {
    let mut world = World::new();
    let rvn = world.put("job", "b", CALLER, lease_secs(5));
    world.after_reads.push_back(Box::new(|world: &mut World| {
        world.bump("job");
    }));
    let seen = AcquireRequest {
        observed_rvn: Some(rvn),
        ..acquire_of("job", "a")
    };
    let outcome = acquire(&mut world, &seen).unwrap();
    assert!(!outcome.acquired);
    assert!(outcome.rvn > rvn, "the refusal shows the heartbeat's RVN");
    assert_eq!(world.locks["job"].owner, "b");
    assert!(!world.is_name_locked("job"));
}

#[test]
fn a_race_lost_to_a_release_takes_the_lock_on_the_next_pass() {
    let mut world = World::new();
    let rvn = world.put("job", "b", CALLER, lease_secs(5));
    world.after_reads.push_back(Box::new(|world: &mut World| {
        drop(world.locks.remove("job"))
    }));
    let seen = AcquireRequest {
        observed_rvn: Some(rvn),
        ..acquire_of("job", "a")
    };
    let outcome = acquire(&mut world, &seen).unwrap();
    assert!(outcome.acquired && !outcome.taken_over);
    assert!(world.is_name_locked("job"));
}

#[test]
fn a_snapshot_that_never_sees_the_writer_runs_out_of_passes() {
    let mut world = World::new();
    // The snapshot shows no lock, but the table has one: every insert fails.
    world.snapshot = Some(world.locks.clone());
    world.put("job", "b", OTHER_ROLE, lease_secs(5));
    let error = acquire(&mut world, &acquire_of("job", "a")).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::SerializationFailure { name: "job".into() }
    );
    assert_eq!(world.reads, ACQUIRE_PASSES);
}

#[test]
fn a_heartbeat_renews_with_a_new_rvn_and_optionally_a_new_lease() {
    let mut world = World::new();
    let rvn = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    let renewed = heartbeat(
        &mut world,
        &HeartbeatRequest {
            lease: Some(lease_secs(90)),
            data: Some(b"step 3"),
            ..heartbeat_of("job", "a", rvn)
        },
    )
    .unwrap();
    assert!(renewed > rvn);
    let lock = &world.locks["job"];
    assert_eq!((lock.rvn, lock.lease), (renewed, lease_secs(90)));
    assert_eq!(lock.data.as_deref(), Some(&b"step 3"[..]));
}

#[test]
fn a_heartbeat_after_a_takeover_says_the_rvn_moved_on() {
    let mut world = World::new();
    let rvn = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    let newer = world.bump("job");
    let error = heartbeat(&mut world, &heartbeat_of("job", "a", rvn)).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::NotHeld {
            name: "job".into(),
            owner: "a".into(),
            reason: NotHeldReason::NewerRvn { rvn: newer }
        }
    );
}

#[test]
fn a_heartbeat_from_another_role_is_refused_as_such() {
    let mut world = World::new();
    let rvn = world.put("job", "a", OTHER_ROLE, lease_secs(5));
    let error = heartbeat(&mut world, &heartbeat_of("job", "a", rvn)).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::HeldByOtherRole {
            name: "job".into(),
            holder_role: OTHER_ROLE
        }
    );
    assert_eq!(world.locks["job"].rvn, rvn, "nothing written");
}

/// While another transaction has the name (here: the holder's fence), a call by
/// another role does not queue for it: queued, it would make the holder's next
/// fence wait behind it until the first one ends.  It gets the same answer.
#[test]
fn another_roles_futile_calls_on_a_busy_name_answer_without_queuing() {
    let mut world = World::new();
    let rvn = world.put("job", "a", OTHER_ROLE, lease_secs(5));
    world.busy.insert("job".into());
    let held_by_other_role = ProtocolError::HeldByOtherRole {
        name: "job".into(),
        holder_role: OTHER_ROLE,
    };
    assert_eq!(
        heartbeat(&mut world, &heartbeat_of("job", "a", rvn)),
        Err(held_by_other_role.clone())
    );
    assert_eq!(
        release(&mut world, &release_of("job", "a", rvn)),
        Err(held_by_other_role)
    );
    assert_eq!(
        release(&mut world, &release_of("job", "a", rvn + 1)),
        Ok(false),
        "a release naming another RVN is false, as for any non-holder"
    );
    let own = world.put("mine", "a", CALLER, lease_secs(5));
    let renewed = heartbeat_many(&mut world, "a", &[("job", rvn), ("mine", own)], None);
    assert_eq!(renewed[0], None);
    assert!(renewed[1].is_some_and(|new| new > own), "{renewed:?}");
    assert!(
        world.queued_for_names.is_empty(),
        "queued for {:?}",
        world.queued_for_names
    );
    assert!(world.name_locks.values().all(|count| *count == 0));
    assert_eq!(world.locks["job"].rvn, rvn, "nothing written");
}

/// The holder's own heartbeat and release still wait for a busy name.
#[test]
fn the_holders_calls_on_a_busy_name_wait_for_it() {
    let mut world = World::new();
    let rvn = world.put("job", "a", CALLER, lease_secs(5));
    world.busy.insert("job".into());
    let renewed = heartbeat(&mut world, &heartbeat_of("job", "a", rvn)).unwrap();
    assert_eq!(
        release(&mut world, &release_of("job", "a", renewed)),
        Ok(true)
    );
    assert_eq!(world.queued_for_names, ["job", "job"]);
}

#[test]
fn releasing_a_lock_not_held_is_false_not_an_error() {
    let mut world = World::new();
    assert_eq!(release(&mut world, &release_of("job", "a", 7)), Ok(false));
    let rvn = world.put("job", "b", CALLER, lease_secs(5));
    assert_eq!(release(&mut world, &release_of("job", "a", rvn)), Ok(false));
    assert_eq!(
        release(&mut world, &release_of("job", "b", rvn + 1)),
        Ok(false)
    );
    assert!(world.locks.contains_key("job"));
}

#[test]
fn releasing_another_roles_lock_is_an_error() {
    let mut world = World::new();
    let rvn = world.put("job", "a", OTHER_ROLE, lease_secs(5));
    assert!(matches!(
        release(&mut world, &release_of("job", "a", rvn)),
        Err(ProtocolError::HeldByOtherRole { .. })
    ));
    assert!(world.locks.contains_key("job"));
}

#[test]
fn data_on_a_deleting_release_is_refused_before_anything_is_locked() {
    let mut world = World::new();
    let rvn = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    world.name_locks.clear();
    let with_data = ReleaseRequest {
        data: Some(b"lost"),
        ..release_of("job", "a", rvn)
    };
    assert_eq!(
        release(&mut world, &with_data),
        Err(ProtocolError::DataWithoutKeep)
    );
    assert!(!world.is_name_locked("job"));
    assert_eq!(world.locks["job"].rvn, rvn);
}

#[test]
fn a_keeping_release_hands_its_data_to_the_next_holder() {
    let mut world = World::new();
    let rvn = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    let keeping = ReleaseRequest {
        keep: true,
        data: Some(b"done to 9000"),
        ..release_of("job", "a", rvn)
    };
    assert_eq!(release(&mut world, &keeping), Ok(true));
    let lock = &world.locks["job"];
    assert!(lock.released && lock.rvn > rvn);
    let next = acquire(&mut world, &acquire_of("job", "b")).unwrap();
    assert!(next.acquired);
    assert_eq!(next.data.as_deref(), Some(&b"done to 9000"[..]));
}

#[test]
fn release_all_releases_only_the_callers_own_in_name_order() {
    let mut world = World::new();
    for name in ["c", "a", "b"] {
        acquire(&mut world, &acquire_of(name, "w")).unwrap();
    }
    world.put("theirs", "w", OTHER_ROLE, lease_secs(5));
    world.put("other-owner", "x", CALLER, lease_secs(5));
    world.name_locks.clear();
    assert_eq!(release_all(&mut world, "w", false), 3);
    let left: Vec<&str> = world.locks.keys().map(String::as_str).collect();
    assert_eq!(left, ["other-owner", "theirs"]);
    let locked: Vec<&str> = world.name_locks.keys().map(String::as_str).collect();
    assert_eq!(locked, ["a", "b", "c"]);
}

#[test]
fn rvns_only_grow_through_every_kind_of_write() {
    let mut world = World::new();
    let mut last = 0;
    let mut saw = |rvn: i64| {
        assert!(rvn > last, "{rvn} after {last}");
        last = rvn;
    };
    let first = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    saw(first);
    let beat = heartbeat(&mut world, &heartbeat_of("job", "a", first)).unwrap();
    saw(beat);
    let taken = acquire(
        &mut world,
        &AcquireRequest {
            observed_rvn: Some(beat),
            ..acquire_of("job", "b")
        },
    )
    .unwrap();
    saw(taken.rvn);
    let keeping = ReleaseRequest {
        keep: true,
        ..release_of("job", "b", taken.rvn)
    };
    release(&mut world, &keeping).unwrap();
    saw(world.locks["job"].rvn);
    saw(acquire(&mut world, &acquire_of("job", "c")).unwrap().rvn);
}

#[test]
fn another_roles_lock_is_taken_over_only_after_its_lease_by_the_server_clock() {
    let mut world = World::new();
    let rvn = world.put("job", "b", OTHER_ROLE, lease_secs(60));
    world.locks.get_mut("job").unwrap().data = Some(b"their checkpoint".to_vec());
    let seen = AcquireRequest {
        observed_rvn: Some(rvn),
        ..acquire_of("job", "a")
    };
    world.advance(Duration::from_secs(59));
    let early = acquire(&mut world, &seen).unwrap();
    assert!(!early.acquired, "the RVN seen is not enough across roles");
    assert!(!world.is_name_locked("job"));
    world.advance(Duration::from_secs(1));
    let taken = acquire(&mut world, &seen).unwrap();
    assert!(taken.acquired && taken.taken_over);
    assert_eq!(
        taken.data, None,
        "another role's checkpoint is not inherited"
    );
    assert_eq!(world.locks["job"].data, None);
    assert_eq!(world.locks["job"].holder_role, CALLER);
}

#[test]
fn a_kept_lock_of_another_role_is_free_but_its_data_stays_behind() {
    let mut world = World::new();
    world.put("job", "b", OTHER_ROLE, lease_secs(60));
    let lock = world.locks.get_mut("job").unwrap();
    lock.released = true;
    lock.data = Some(b"theirs".to_vec());
    let taken = acquire(&mut world, &acquire_of("job", "a")).unwrap();
    assert!(taken.acquired);
    assert_eq!(taken.data, None);
}

#[test]
fn a_refusal_shows_the_data_only_to_the_holders_role() {
    let mut world = World::new();
    world.put("mine", "b", CALLER, lease_secs(60));
    world.put("theirs", "b", OTHER_ROLE, lease_secs(60));
    for lock in world.locks.values_mut() {
        lock.data = Some(b"checkpoint".to_vec());
    }
    let mine = acquire(&mut world, &acquire_of("mine", "a")).unwrap();
    assert_eq!(mine.data.as_deref(), Some(&b"checkpoint"[..]));
    let theirs = acquire(&mut world, &acquire_of("theirs", "a")).unwrap();
    assert!(!theirs.acquired);
    assert_eq!(theirs.data, None);
    assert_eq!(
        theirs.owner, "b",
        "who holds it and until when stays visible"
    );
}

#[test]
fn a_release_or_heartbeat_that_changes_nothing_holds_nothing() {
    let mut world = World::new();
    let rvn = world.put("job", "b", CALLER, lease_secs(60));
    assert_eq!(release(&mut world, &release_of("job", "a", rvn)), Ok(false));
    assert!(!world.is_name_locked("job"));
    assert!(heartbeat(&mut world, &heartbeat_of("job", "a", rvn)).is_err());
    assert!(!world.is_name_locked("job"));
    // A name this transaction wrote before stays locked: only the count drops.
    let mine = acquire(&mut world, &acquire_of("other", "a")).unwrap().rvn;
    assert_eq!(
        release(&mut world, &release_of("other", "a", mine + 100)),
        Ok(false)
    );
    assert!(world.is_name_locked("other"));
}

#[test]
fn release_all_holds_no_name_lock_after_each_release_and_goes_in_key_order() {
    let mut world = World::new();
    let names: Vec<String> = (0..50).map(|n| format!("shard-{n}")).collect();
    for name in &names {
        world.put(name, "w", CALLER, lease_secs(60));
    }
    // The RVNs a keeping release draws record the order of the releases.
    assert_eq!(release_all(&mut world, "w", true), 50);
    assert!(
        world.name_locks.values().all(|count| *count == 0),
        "{:?}",
        world.name_locks
    );
    let released: Vec<(String, i64)> = world
        .locks
        .iter()
        .map(|(name, lock)| (name.clone(), lock.rvn))
        .collect();
    assert!(world.written_in_key_order(released.iter().map(|(name, rvn)| (name.as_str(), *rvn))));
}

#[test]
fn a_sequence_that_fell_behind_never_moves_a_lock_backwards() {
    let mut world = World::new();
    let first = acquire(&mut world, &acquire_of("job", "a")).unwrap().rvn;
    world.last_rvn += 1000;
    let high = heartbeat(&mut world, &heartbeat_of("job", "a", first)).unwrap();
    // Someone rewinds the sequence (setval, a restore of the table alone, ...).
    world.last_rvn = 3;
    let renewed = heartbeat(&mut world, &heartbeat_of("job", "a", high)).unwrap();
    assert!(renewed > high, "{renewed} after {high}");
    assert_eq!(world.locks["job"].rvn, renewed);
    assert!(world.last_rvn >= high, "the sequence moved past the table");
    // Takeovers and keeping releases are guarded the same way.
    world.last_rvn = 3;
    let taken = acquire(
        &mut world,
        &AcquireRequest {
            observed_rvn: Some(renewed),
            ..acquire_of("job", "b")
        },
    )
    .unwrap();
    assert!(taken.rvn > renewed);
    world.last_rvn = 3;
    let keeping = ReleaseRequest {
        keep: true,
        ..release_of("job", "b", taken.rvn)
    };
    assert_eq!(release(&mut world, &keeping), Ok(true));
    assert!(world.locks["job"].rvn > taken.rvn);
}

#[test]
fn a_forced_release_removes_any_lock_and_holds_nothing_when_there_is_none() {
    let mut world = World::new();
    world.put("stuck", "gone", RoleId(999), lease_secs(60));
    assert!(force_release(&mut world, "stuck"));
    assert!(!world.locks.contains_key("stuck"));
    assert!(!force_release(&mut world, "missing"));
    assert!(!world.is_name_locked("missing"));
}

#[test]
fn an_attempt_that_must_not_wait_reports_a_busy_name_and_takes_nothing() {
    let mut world = World::new();
    let rvn = world.put("job", "b", CALLER, lease_secs(1));
    world.busy.insert("job".into());
    let how = Attempt {
        wait_for_name: false,
        holder_data: Fields::WithoutData,
    };
    let seen = AcquireRequest {
        observed_rvn: Some(rvn),
        ..acquire_of("job", "a")
    };
    match attempt(&mut world, &seen, how).unwrap() {
        Attempted::NameBusy { current } => assert_eq!(current.map(|lock| lock.rvn), Some(rvn)),
        other => panic!("expected a busy name, got {other:?}"),
    }
    assert_eq!(world.locks["job"].owner, "b");
    // A refusal needs no name lock, so a busy name does not matter for it.
    let plain = attempt(&mut world, &acquire_of("job", "a"), how).unwrap();
    assert!(matches!(
        plain,
        Attempted::Done(AcquireOutcome {
            acquired: false,
            ..
        })
    ));
}
