use super::memory::{at, lease_secs, World, CALLER, OTHER_ROLE};
use super::requests::{acquire_of, fence_of, heartbeat_of};
use crate::error::{NotHeldReason, ProtocolError};
use crate::steps::*;
use crate::store::Fields;
use crate::waiting::acquire_wait;

#[test]
fn the_holders_fence_returns_its_rvn_writes_nothing_and_holds_name_and_row_shared() {
    let mut world = World::new();
    let rvn = world.put("job", "a", CALLER, lease_secs(20));
    let (before, sequence) = (world.locks.clone(), world.last_rvn);
    assert_eq!(fence(&mut world, &fence_of("job", "a", rvn)), Ok(rvn));
    assert_eq!(world.locks, before, "a fence writes nothing");
    assert_eq!(world.last_rvn, sequence, "a fence draws no RVN");
    assert!(world.is_name_shared("job"));
    assert!(
        !world.is_name_locked("job"),
        "shared, so the holder's other transactions may fence it too"
    );
    assert!(world.row_shares.contains("job"));
}

#[test]
fn a_fence_after_a_takeover_fails_like_a_heartbeat_and_holds_nothing() {
    let mut world = World::new();
    let rvn = world.put("job", "a", CALLER, lease_secs(20));
    let newer = world.bump("job");
    let error = fence(&mut world, &fence_of("job", "a", rvn)).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::NotHeld {
            name: "job".into(),
            owner: "a".into(),
            reason: NotHeldReason::NewerRvn { rvn: newer }
        }
    );
    assert!(!world.holds_anything(), "{:?}", world.shared_name_locks);
}

/// Puts a lock in some state; the RVN to present.
type Situation = fn(&mut World) -> i64;

/// A fence says why the caller does not hold a lock in the very words of a
/// heartbeat: the same error, and so the same SQLSTATE and DETAIL.
#[test]
fn every_reason_not_to_hold_a_lock_is_the_heartbeats() {
    let situations: [(&str, Situation); 5] = [
        ("missing", |_| 7),
        ("released", |world| {
            let rvn = world.put("job", "a", CALLER, lease_secs(20));
            world.locks.get_mut("job").unwrap().released = true;
            rvn
        }),
        ("another owner", |world| {
            world.put("job", "b", CALLER, lease_secs(20))
        }),
        ("a newer rvn", |world| {
            let rvn = world.put("job", "a", CALLER, lease_secs(20));
            world.bump("job");
            rvn
        }),
        ("another role", |world| {
            world.put("job", "a", OTHER_ROLE, lease_secs(20))
        }),
    ];
    for (situation, set_up) in situations {
        let mut fenced = World::new();
        let rvn = set_up(&mut fenced);
        let mut beaten = World::new();
        set_up(&mut beaten);
        let fence_error = fence(&mut fenced, &fence_of("job", "a", rvn)).unwrap_err();
        let heartbeat_error = heartbeat(&mut beaten, &heartbeat_of("job", "a", rvn)).unwrap_err();
        assert_eq!(fence_error, heartbeat_error, "{situation}");
        assert!(!fenced.holds_anything(), "{situation}");
        assert_eq!(fenced.locks, beaten.locks, "{situation}: nothing written");
    }
}

#[test]
fn another_roles_lock_is_never_fenced_even_with_owner_and_rvn() {
    let mut world = World::new();
    let rvn = world.put("job", "a", OTHER_ROLE, lease_secs(20));
    assert_eq!(
        fence(&mut world, &fence_of("job", "a", rvn)),
        Err(ProtocolError::HeldByOtherRole {
            name: "job".into(),
            holder_role: OTHER_ROLE
        })
    );
    assert!(!world.holds_anything());
}

/// The check comes after the name's lock: a takeover that was writing the name
/// when the fence asked for it, and committed before the fence got it, is seen.
#[test]
fn a_takeover_the_fence_queued_behind_is_seen_by_its_check() {
    let mut world = World::new();
    let rvn = world.put("job", "a", CALLER, lease_secs(20));
    world
        .after_name_locks
        .push_back(Box::new(|world: &mut World| {
            world.put("job", "b", CALLER, lease_secs(20));
        }));
    let error = fence(&mut world, &fence_of("job", "a", rvn)).unwrap_err();
    assert!(
        matches!(
            &error,
            ProtocolError::NotHeld {
                reason: NotHeldReason::OtherOwner { owner },
                ..
            } if owner == "b"
        ),
        "{error:?}"
    );
    assert!(!world.holds_anything());
}

/// A bulk write (heartbeat-many, release-all) of the same owner gives the name
/// back before it commits: the fence waits for the row and sees where it ended.
#[test]
fn a_fence_waits_out_a_bulk_write_of_the_row_and_sees_its_outcome() {
    for commits in [true, false] {
        let mut world = World::new();
        let rvn = world.put("job", "a", CALLER, lease_secs(20));
        world.rows_locked.insert("job".into());
        world.open_row_writes.insert(
            "job".into(),
            Box::new(move |world: &mut World| {
                if commits {
                    world.bump("job");
                }
            }),
        );
        let fenced = fence(&mut world, &fence_of("job", "a", rvn));
        if commits {
            assert!(
                matches!(
                    fenced,
                    Err(ProtocolError::NotHeld {
                        reason: NotHeldReason::NewerRvn { .. },
                        ..
                    })
                ),
                "{fenced:?}"
            );
            assert!(!world.holds_anything());
        } else {
            assert_eq!(
                fenced,
                Ok(rvn),
                "a rolled-back renewal left the lock as it was"
            );
        }
    }
}

#[test]
fn fences_nest_and_each_is_given_back_on_its_own() {
    let mut world = World::new();
    let rvn = world.put("job", "a", CALLER, lease_secs(20));
    assert_eq!(fence(&mut world, &fence_of("job", "a", rvn)), Ok(rvn));
    // A second fence with a stale RVN fails; the first one still holds.
    assert!(fence(&mut world, &fence_of("job", "a", rvn - 1)).is_err());
    assert!(world.is_name_shared("job"));
    assert_eq!(world.shared_name_locks["job"], 1);
}

/// Another transaction fenced the lock and keeps its transaction open (it holds
/// the name shared and the row): a waiting acquire counts the lock as busy the
/// whole time, however long the RVN stood still, and takes it over only once
/// that transaction ended.
#[test]
fn a_fenced_lock_is_taken_over_only_after_the_fencing_transaction_ends() {
    let mut world = World::new();
    world.put("job", "slow", CALLER, lease_secs(1));
    world.busy.insert("job".into());
    world.rows_locked.insert("job".into());
    world.scheduled.push((
        at(5000),
        Box::new(|world: &mut World| {
            world.busy.remove("job");
            world.rows_locked.remove("job");
        }),
    ));
    let request = acquire_of("job", "waiter");
    let ended = acquire_wait(&mut world, &request, None, None, Fields::WithoutData).unwrap();
    let outcome = ended.outcome.expect("an outcome");
    assert!(outcome.acquired && outcome.taken_over);
    // Taken over not before the fence ended, nor long after.
    world.assert_noticed_within_a_poll(at(5000));
}
