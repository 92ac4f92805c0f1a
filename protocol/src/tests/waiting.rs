use std::time::Duration;

use super::memory::{at, lease_secs, World, CALLER, OTHER_ROLE};
use super::requests::acquire_of;
use crate::steps::{acquire, AcquireOutcome};
use crate::store::{Fields, Queue};
use crate::waiting::*;

const LEASE: Duration = Duration::from_secs(2);
const MS: Duration = Duration::from_millis(1);

fn held(rvn: i64, lease: Duration) -> Seen {
    Seen {
        rvn,
        lease,
        stood_still: None,
    }
}

fn seen(watch: Option<Watch>, rvn: i64, lease: Duration, now: Duration) -> Watch {
    Watch::after_refusal(watch, held(rvn, lease), now, None)
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
    let refused = Watch::after_refusal(Some(watch), held(7, LEASE), at(2000), Some(7));
    assert!(refused.presented);
    assert_eq!(refused.since, at(0));
    assert_eq!(refused.next_attempt(at(2000), at(100), None), at(2100));
    // A new RVN is a new wait, whatever was presented before.
    let moved = Watch::after_refusal(Some(refused), held(8, LEASE), at(2100), Some(7));
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
fn the_servers_sighting_starts_the_watch_when_it_is_earlier() {
    let first = Watch::after_refusal(
        None,
        Seen {
            stood_still: Some(at(1500)),
            ..held(7, LEASE)
        },
        at(4000),
        None,
    );
    assert_eq!(first.since, at(2500), "written when the server says");
    // A later look that the server can no longer place keeps the earlier start.
    let again = Watch::after_refusal(Some(first), held(7, LEASE), at(4200), None);
    assert_eq!(again.since, at(2500));
    // The server never moves a watch's start later than the waiter's own sight.
    let own = seen(None, 7, LEASE, at(100));
    let later = Watch::after_refusal(
        Some(own),
        Seen {
            stood_still: Some(Duration::ZERO),
            ..held(7, LEASE)
        },
        at(900),
        None,
    );
    assert_eq!(later.since, at(100));
}

#[test]
fn a_waiter_that_comes_late_to_a_dead_holder_takes_the_lock_at_once() {
    // The case: a 2 s lease, silent for 4 s when the waiter arrives.
    for role in [CALLER, OTHER_ROLE] {
        let mut world = World::new();
        world.put("job", "dead", role, lease_secs(2));
        world.advance(at(4000));
        let ended = wait(&mut world, None);
        assert!(outcome(&ended).taken_over, "{role:?}");
        assert_eq!((world.now, world.sleeps), (at(4000), 0), "{role:?}");
    }
}

#[test]
fn another_roles_silent_holder_is_taken_over_when_the_server_saw_its_lease_run_out() {
    let mut world = World::new();
    world.put("job", "dead", OTHER_ROLE, lease_secs(2)); // the server sees it at 0
    world.advance(at(300)); // the waiter comes 300 ms later
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    assert_eq!(
        world.now,
        at(2000),
        "at the lease's end as the server saw it"
    );
}

#[test]
fn without_the_servers_watch_another_roles_lock_is_never_taken_on_the_waiters_word() {
    let mut world = World::new();
    world.server_watches = false;
    let rvn = world.put("job", "dead", OTHER_ROLE, lease_secs(2));
    let ended = wait(&mut world, Some(at(10_000)));
    assert!(!outcome(&ended).acquired);
    assert_eq!(outcome(&ended).rvn, rvn);
    assert!(
        world.sleeps < 120,
        "no busy loop once its RVN was refused: {} sleeps",
        world.sleeps
    );
    // Within the role, the waiter's own watch decides, a lease after it first saw it.
    let mut world = World::new();
    world.server_watches = false;
    world.put("job", "dead", CALLER, lease_secs(2));
    world.advance(at(700));
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    assert_eq!(world.now, at(2700));
}

#[test]
fn after_a_restart_the_server_counts_from_its_start_and_never_takes_early() {
    let mut world = World::new();
    world.put("job", "holder", OTHER_ROLE, lease_secs(2)); // written at 0
    world.advance(at(1500));
    world.server_restarts(); // it forgets the write it saw
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).taken_over);
    assert_eq!(
        world.now,
        at(3500),
        "a lease after the restart, not after the write it forgot"
    );
}

#[test]
fn a_waiter_with_others_queued_ahead_attempts_nothing_until_it_is_first() {
    let mut world = World::new();
    world.queue_ahead_until(Queue::Lock("job"), at(850));
    let ended = wait(&mut world, None);
    assert!(outcome(&ended).acquired);
    assert_eq!(world.reads, 1, "its first attempt came when it was first");
    world.assert_noticed_within_a_poll(at(850));
    // A deadline that passes in the queue ends the wait with one look, at the
    // deadline, which shows the holder and takes nothing.
    let mut world = World::new();
    world.queue_ahead_until(Queue::Lock("job"), at(5000));
    let ended = wait(&mut world, Some(at(1000)));
    assert_eq!((ended.outcome, world.reads, world.now), (None, 1, at(1000)));
    assert!(world.locks.is_empty(), "a free lock stays the queue's");
    let rvn = world.put("job", "holder", OTHER_ROLE, lease_secs(60));
    let ended = wait(&mut world, Some(at(1500)));
    assert_eq!(outcome(&ended).rvn, rvn, "the holder, shown at the end");
}

#[test]
fn a_plain_acquire_does_not_jump_the_queue_of_a_free_or_dead_holders_lock() {
    let mut world = World::new();
    world.queue_ahead_until(Queue::Lock("job"), at(60_000));
    let request = acquire_of("job", "jumper");
    assert_eq!(
        acquire(&mut world, &request).unwrap(),
        None,
        "free: no holder to show"
    );
    assert!(world.locks.is_empty());
    let rvn = world.put("job", "dead", CALLER, lease_secs(1));
    world.advance(at(5000));
    let refused = acquire(&mut world, &request)
        .unwrap()
        .expect("the dead holder");
    assert_eq!((refused.acquired, refused.rvn), (false, rvn));
    assert!(!world.holds_anything());
    // A live holder's lock is refused as ever, whatever the queue.
    let live = world.bump("job");
    let refused = acquire(&mut world, &request).unwrap().unwrap();
    assert_eq!((refused.acquired, refused.rvn), (false, live));
}

#[test]
fn a_wait_goes_in_passes_over_its_locks_and_sleeps_until_the_first_is_due() {
    let mut wait = Wait::new(3, None, Vec::new(), Fields::WithData);
    for target in 0..3 {
        let next = wait.next(at(0), false);
        assert_eq!(
            next,
            Next::Attempt {
                target,
                observed_rvn: None,
                holder_data: Fields::WithoutData
            }
        );
        let lease = Duration::from_secs(1 + target as u64);
        wait.refused(at(0), Some(held(10 + target as i64, lease)));
    }
    // Each is polled every tenth of its lease (capped at 100 ms): the first is due first.
    assert_eq!(wait.next(at(0), false), Next::Sleep { until: at(100) });
    assert!(matches!(
        wait.next(at(100), false),
        Next::Attempt { target: 0, .. }
    ));
    // A lock whose RVN stood still for its lease is presented.
    let mut wait = Wait::new(1, Some(at(3000)), Vec::new(), Fields::WithData);
    wait.next(at(0), false);
    wait.refused(at(0), Some(held(7, LEASE)));
    assert_eq!(wait.next(at(0), false), Next::Sleep { until: at(100) });
    assert_eq!(
        wait.next(at(2000), false),
        Next::Attempt {
            target: 0,
            observed_rvn: Some(7),
            holder_data: Fields::WithoutData
        }
    );
    // The pass at the deadline is the last and reads the holder's data.
    wait.refused(at(2000), Some(held(8, LEASE)));
    assert_eq!(wait.next(at(2000), false), Next::Sleep { until: at(2100) });
    assert_eq!(
        wait.next(at(3000), false),
        Next::Attempt {
            target: 0,
            observed_rvn: None,
            holder_data: Fields::WithData
        }
    );
    wait.refused(at(3000), Some(held(8, LEASE)));
    assert_eq!(wait.next(at(3000), false), Next::TimedOut);
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
