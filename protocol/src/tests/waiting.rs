use std::time::Duration;

use super::memory::{at, lease_secs, World, CALLER, OTHER_ROLE};
use super::requests::acquire_of;
use crate::steps::AcquireOutcome;
use crate::store::Fields;
use crate::waiting::*;

const LEASE: Duration = Duration::from_secs(2);
const MS: Duration = Duration::from_millis(1);

fn seen(watch: Option<Watch>, rvn: i64, lease: Duration, now: Duration) -> Watch {
    Watch::after_refusal(watch, rvn, lease, now, None)
}

#[test]
fn the_same_rvn_keeps_its_start_and_a_new_one_restarts_the_wait() {
    let first = seen(None, 7, LEASE, at(0));
    assert_eq!(seen(Some(first), 7, LEASE, at(500)), first);
    let renewed = seen(Some(first), 8, LEASE, at(500));
    assert_eq!((renewed.rvn, renewed.since), (8, at(500)));
}

#[test]
fn the_rvn_is_presented_only_once_it_stood_still_for_the_whole_lease() {
    let watch = seen(None, 7, LEASE, at(1000));
    assert_eq!(watch.observed_rvn(at(1000)), None);
    assert_eq!(
        watch.observed_rvn(at(3000) - Duration::from_micros(1)),
        None
    );
    assert_eq!(watch.observed_rvn(at(3000)), Some(7));
}

#[test]
fn a_lease_learnt_later_for_the_same_rvn_replaces_the_unknown_one() {
    // A watch resumed in a later transaction does not know the lease yet.
    let resumed = Watch {
        rvn: 7,
        since: at(0),
        holder_lease: Duration::MAX,
        presented: false,
    };
    assert_eq!(resumed.observed_rvn(at(1_000_000)), None);
    let learnt = seen(Some(resumed), 7, LEASE, at(2500));
    assert_eq!(learnt.since, at(0), "the start stays");
    assert_eq!(learnt.observed_rvn(at(2500)), Some(7));
}

#[test]
fn a_heartbeat_with_a_longer_lease_restarts_the_wait_with_that_lease() {
    let first = seen(None, 7, LEASE, at(0));
    let renewed = seen(Some(first), 9, 3 * LEASE, at(1500));
    assert_eq!(renewed.observed_rvn(at(1500) + LEASE), None);
    assert_eq!(renewed.observed_rvn(at(1500) + 3 * LEASE), Some(9));
}

#[test]
fn attempts_come_every_poll_at_the_lease_end_and_at_the_deadline() {
    let watch = seen(None, 7, LEASE, at(0));
    let poll = server_poll(LEASE);
    assert_eq!(poll, MAX_SERVER_POLL, "a 2 s lease polls at the 100 ms cap");
    assert_eq!(watch.next_attempt(at(0), poll, None), at(100));
    assert_eq!(watch.next_attempt(at(1970), poll, None), LEASE);
    assert_eq!(
        watch.next_attempt(at(2500), poll, None),
        at(2500),
        "ran out meanwhile: at once"
    );
    assert_eq!(watch.next_attempt(at(0), poll, Some(at(20))), at(20));
    assert_eq!(
        server_poll(at(50)),
        MIN_SERVER_POLL,
        "a short lease polls at the floor"
    );
}

#[test]
fn an_rvn_refused_when_presented_is_tried_again_at_the_poll_not_at_once() {
    let watch = seen(None, 7, LEASE, at(0));
    let refused = Watch::after_refusal(Some(watch), 7, LEASE, at(2000), Some(7));
    assert!(refused.presented);
    assert_eq!(refused.since, at(0));
    assert_eq!(refused.next_attempt(at(2000), at(100), None), at(2100));
    // A new RVN is a new wait, whatever was presented before.
    let moved = Watch::after_refusal(Some(refused), 8, LEASE, at(2100), Some(7));
    assert!(!moved.presented);
}

#[test]
fn an_enormous_lease_never_overflows_the_clock() {
    let watch = seen(None, 7, Duration::MAX, at(5));
    assert_eq!(watch.takeover_at(), Duration::MAX);
    assert_eq!(watch.observed_rvn(Duration::MAX - MS), None);
}

fn wait(world: &mut World, deadline: Option<Duration>) -> WaitOutcome {
    acquire_wait(
        world,
        &acquire_of("job", "waiter"),
        deadline,
        None,
        Fields::WithData,
    )
    .unwrap()
}

fn outcome(ended: &WaitOutcome) -> &AcquireOutcome {
    ended.outcome.as_ref().expect("the wait shows an outcome")
}

#[test]
fn a_silent_holder_of_the_role_is_taken_over_exactly_one_lease_after_first_seen() {
    let mut world = World::new();
    world.now = at(300);
    world.put("job", "dead", CALLER, lease_secs(2));
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).acquired && outcome(&ended).taken_over);
    assert_eq!(
        world.now,
        at(2300),
        "not a moment before the lease, nor a poll after"
    );
}

#[test]
fn another_roles_silent_holder_is_taken_over_once_the_server_clock_agrees() {
    let mut world = World::new();
    world.put("job", "dead", OTHER_ROLE, lease_secs(2)); // written at wall 0
                                                         // The waiter first sees it 300 ms on, but the server's clock was then set
                                                         // back 500 ms: the waiter's lease ends at 2300 ms, the server's at 2500 ms.
    world.advance(at(300));
    world.wall.0 -= 500_000;
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    assert!(
        world.now >= at(2500),
        "not before the server's lease end: {:?}",
        world.now
    );
    assert!(
        world.now <= at(2600),
        "within a poll of it: {:?}",
        world.now
    );
    assert!(
        world.sleeps < 40,
        "no busy loop while the server disagrees: {}",
        world.sleeps
    );
}

#[test]
fn every_heartbeat_restarts_the_wait() {
    let mut world = World::new();
    world.put("job", "alive", OTHER_ROLE, lease_secs(1));
    for beat in 1..=5u64 {
        world.scheduled.push((
            at(beat * 700),
            Box::new(|world: &mut World| {
                world.bump("job");
            }),
        ));
    }
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    // The last heartbeat's RVN was first seen at the poll after 3500 ms.
    world.assert_noticed_within_a_poll(at(4500));
}

#[test]
fn a_release_is_noticed_within_one_poll() {
    let mut world = World::new();
    world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    world.scheduled.push((
        at(1234),
        Box::new(|world: &mut World| drop(world.locks.remove("job"))),
    ));
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).acquired && !outcome(&ended).taken_over);
    world.assert_noticed_within_a_poll(at(1234));
}

#[test]
fn the_deadline_ends_the_wait_with_the_holder_and_what_was_seen() {
    let mut world = World::new();
    let rvn = world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    let ended = wait(&mut world, Some(at(250)));
    assert!(!outcome(&ended).acquired);
    assert_eq!(outcome(&ended).owner, "holder");
    assert_eq!(world.now, at(250));
    assert_eq!(
        ended.watch.map(|watch| (watch.rvn, watch.since)),
        Some((rvn, at(0)))
    );
    assert!(
        !world.is_name_locked("job"),
        "nothing is held after a wait that failed"
    );
}

#[test]
fn polls_read_no_data_and_the_last_attempt_reads_it_once() {
    let mut world = World::new();
    world.put("job", "holder", CALLER, lease_secs(60));
    world.locks.get_mut("job").unwrap().data = Some(vec![7; 1000]);
    let ended = wait(&mut world, Some(at(1000)));
    assert!(world.reads > 5, "it polled: {}", world.reads);
    assert_eq!(world.data_reads, 1);
    assert_eq!(outcome(&ended).data.as_deref(), Some(&[7; 1000][..]));
    let mut world_without = World::new();
    world_without.put("job", "holder", CALLER, lease_secs(60));
    acquire_wait(
        &mut world_without,
        &acquire_of("job", "waiter"),
        Some(at(300)),
        None,
        Fields::WithoutData,
    )
    .unwrap();
    assert_eq!(world_without.data_reads, 0);
}

#[test]
fn a_lock_another_transaction_is_writing_never_holds_the_wait_past_its_deadline() {
    let mut world = World::new();
    let rvn = world.put("job", "dead", CALLER, lease_secs(1));
    // The holder heartbeats inside a transaction it keeps open: its name stays
    // locked and its committed RVN stands still.
    world.busy.insert("job".into());
    let ended = wait(&mut world, Some(at(3000)));
    assert_eq!(world.now, at(3000));
    assert!(!outcome(&ended).acquired);
    assert_eq!(outcome(&ended).rvn, rvn);
    assert!(!world.is_name_locked("job"));
}

#[test]
fn a_lock_being_created_by_an_open_transaction_shows_no_holder_at_the_deadline() {
    let mut world = World::new();
    world.busy.insert("job".into());
    let ended = wait(&mut world, Some(at(500)));
    assert_eq!(ended.outcome, None);
    assert_eq!(world.now, at(500));
}

#[test]
fn a_busy_name_is_taken_as_soon_as_it_is_free() {
    let mut world = World::new();
    world.put("job", "dead", CALLER, lease_secs(1));
    world.busy.insert("job".into());
    world.scheduled.push((
        at(2500),
        Box::new(|world: &mut World| {
            world.busy.remove("job");
        }),
    ));
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    world.assert_noticed_within_a_poll(at(2500));
}

#[test]
fn a_zero_wait_tries_once_without_sleeping() {
    let mut world = World::new();
    world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    let ended = wait(&mut world, Some(at(0)));
    assert!(!outcome(&ended).acquired);
    assert_eq!((world.sleeps, world.reads), (0, 1));
}

#[test]
fn a_resumed_watch_keeps_counting_from_its_first_sighting() {
    let mut world = World::new();
    let rvn = world.put("job", "dead", CALLER, lease_secs(2));
    world.now = at(1500);
    let resumed = Watch {
        rvn,
        since: at(0),
        holder_lease: Duration::MAX,
        presented: false,
    };
    let ended = acquire_wait(
        &mut world,
        &acquire_of("job", "waiter"),
        None,
        Some(resumed),
        Fields::WithData,
    )
    .unwrap();
    assert!(outcome(&ended).taken_over);
    assert_eq!(world.now, at(2000));
}

#[test]
fn a_row_locked_by_an_open_bulk_release_never_holds_the_wait_past_its_deadline() {
    let mut world = World::new();
    let rvn = world.put("job", "dead", CALLER, lease_secs(1));
    // A release-all of the holder, still open, locked the row and gave the name back.
    world.rows_locked.insert("job".into());
    let ended = wait(&mut world, Some(at(2500)));
    assert_eq!(world.now, at(2500));
    assert!(!outcome(&ended).acquired);
    assert_eq!(outcome(&ended).rvn, rvn);
    assert!(
        !world.is_name_locked("job"),
        "nothing is held after the wait"
    );
}
