use std::time::Duration;

use super::memory::{lease_secs, World, OTHER_ROLE};
use crate::steps::AcquireRequest;
use crate::waiting::*;

const LEASE: Duration = Duration::from_secs(2);
const MS: Duration = Duration::from_millis(1);

fn at(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn the_same_rvn_keeps_its_start_and_a_new_one_restarts_the_wait() {
    let first = Watch::after_refusal(None, 7, LEASE, at(0));
    assert_eq!(Watch::after_refusal(Some(first), 7, LEASE, at(500)), first);
    let renewed = Watch::after_refusal(Some(first), 8, LEASE, at(500));
    assert_eq!((renewed.rvn, renewed.since), (8, at(500)));
}

#[test]
fn the_rvn_is_presented_only_once_it_stood_still_for_the_whole_lease() {
    let watch = Watch::after_refusal(None, 7, LEASE, at(1000));
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
    };
    assert_eq!(resumed.observed_rvn(at(1_000_000)), None);
    let learnt = Watch::after_refusal(Some(resumed), 7, LEASE, at(2500));
    assert_eq!(learnt.since, at(0), "the start stays");
    assert_eq!(learnt.observed_rvn(at(2500)), Some(7));
}

#[test]
fn a_heartbeat_with_a_longer_lease_restarts_the_wait_with_that_lease() {
    let first = Watch::after_refusal(None, 7, LEASE, at(0));
    let renewed = Watch::after_refusal(Some(first), 9, 3 * LEASE, at(1500));
    assert_eq!(renewed.observed_rvn(at(1500) + LEASE), None);
    assert_eq!(renewed.observed_rvn(at(1500) + 3 * LEASE), Some(9));
}

#[test]
fn attempts_come_every_poll_at_the_lease_end_and_at_the_deadline() {
    let watch = Watch::after_refusal(None, 7, LEASE, at(0));
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
fn an_enormous_lease_never_overflows_the_clock() {
    let watch = Watch::after_refusal(None, 7, Duration::MAX, at(5));
    assert_eq!(watch.takeover_at(), Duration::MAX);
    assert_eq!(watch.observed_rvn(Duration::MAX - MS), None);
}

fn waiting_request(name: &str) -> AcquireRequest<'_> {
    AcquireRequest {
        name,
        owner: "waiter",
        lease: lease_secs(20),
        data: None,
        replace_data: false,
        observed_rvn: None,
    }
}

#[test]
fn a_silent_holder_is_taken_over_exactly_one_lease_after_first_seen() {
    let mut world = World::new();
    world.now = at(300);
    world.put("job", "dead", OTHER_ROLE, lease_secs(2));
    let ended = acquire_wait(&mut world, &waiting_request("job"), None, None).unwrap();
    assert!(ended.outcome.acquired && ended.outcome.taken_over);
    assert_eq!(
        world.now,
        at(2300),
        "not a moment before the lease, nor a poll after"
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
    let ended = acquire_wait(&mut world, &waiting_request("job"), None, None).unwrap();
    assert!(ended.outcome.taken_over);
    // The last heartbeat's RVN was first seen at the poll after 3500 ms.
    assert!(
        world.now >= at(4500) && world.now <= at(4600),
        "{:?}",
        world.now
    );
}

#[test]
fn a_release_is_noticed_within_one_poll() {
    let mut world = World::new();
    world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    world.scheduled.push((
        at(1234),
        Box::new(|world: &mut World| drop(world.locks.remove("job"))),
    ));
    let ended = acquire_wait(&mut world, &waiting_request("job"), None, None).unwrap();
    assert!(ended.outcome.acquired && !ended.outcome.taken_over);
    assert!(
        world.now >= at(1234) && world.now <= at(1334),
        "{:?}",
        world.now
    );
}

#[test]
fn the_deadline_ends_the_wait_with_the_holder_and_what_was_seen() {
    let mut world = World::new();
    let rvn = world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    let ended = acquire_wait(&mut world, &waiting_request("job"), Some(at(250)), None).unwrap();
    assert!(!ended.outcome.acquired);
    assert_eq!(ended.outcome.owner, "holder");
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
fn a_zero_wait_tries_once_without_sleeping() {
    let mut world = World::new();
    world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    let ended = acquire_wait(&mut world, &waiting_request("job"), Some(at(0)), None).unwrap();
    assert!(!ended.outcome.acquired);
    assert_eq!((world.sleeps, world.reads), (0, 1));
}

#[test]
fn a_resumed_watch_keeps_counting_from_its_first_sighting() {
    let mut world = World::new();
    let rvn = world.put("job", "dead", OTHER_ROLE, lease_secs(2));
    world.now = at(1500);
    let resumed = Watch {
        rvn,
        since: at(0),
        holder_lease: Duration::MAX,
    };
    let ended = acquire_wait(&mut world, &waiting_request("job"), None, Some(resumed)).unwrap();
    assert!(ended.outcome.taken_over);
    assert_eq!(world.now, at(2000));
}
