//! The DynamoDB Lock Client's stress test, made harder: 50 connections each add
//! one to a counter kept in a lock's data 20 times, through the lock.  The counter
//! must end at exactly 1,000, every increment must build on the one before it, and
//! the RVNs handed to successive holders must only grow (fencing).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pglock_tests::{
    acquire_waiting, connect, heartbeat, join_all, release_keeping, sqlstate, unique_name, SqlState,
};

const CLIENTS: usize = 50;
const INCREMENTS: usize = 20;

/// One increment that landed: the RVN its holder got and the value it read.
#[derive(Debug, Clone, Copy)]
struct Increment {
    rvn: i64,
    read: u64,
}

#[derive(Default)]
struct Tally {
    increments: Vec<Increment>,
    stalls: usize,
    lost_on_heartbeat: usize,
    lost_on_release: usize,
}

fn counter_of(data: &Option<Vec<u8>>) -> u64 {
    data.as_deref()
        .map(|bytes| std::str::from_utf8(bytes).unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// Small deterministic per-client random numbers (xorshift), reproducible per run.
struct Dice(u64);
impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
}

/// Runs the counter with `stall_chance`: the chance that a holder, after reading
/// the counter, stalls for `stall` (a GC pause, a hung host) before going on.
fn run_counter(lease: Duration, stall_chance: f64, stall: Duration) -> Tally {
    let name = unique_name("counter");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (name, tally) = (name.clone(), tally.clone());
            thread::spawn(move || {
                let mut client = connect();
                let owner = format!("client-{id}");
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
                let mut landed = 0;
                while landed < INCREMENTS {
                    let poll = Duration::from_millis(2 + (dice.roll() * 8.0) as u64);
                    let held = acquire_waiting(&mut client, &name, &owner, lease, poll).unwrap();
                    let read = counter_of(&held.data);
                    let mut rvn = held.rvn;
                    if dice.roll() < stall_chance {
                        tally.lock().unwrap().stalls += 1;
                        thread::sleep(stall);
                        // Back from the stall: a heartbeat tells whether we still hold it.
                        match heartbeat(&mut client, &name, &owner, rvn) {
                            Ok(renewed) => rvn = renewed,
                            Err(error) => {
                                assert_eq!(
                                    sqlstate::<()>(Err(error)),
                                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
                                );
                                tally.lock().unwrap().lost_on_heartbeat += 1;
                                continue;
                            }
                        }
                    }
                    let written = (read + 1).to_string();
                    if release_keeping(&mut client, &name, &owner, rvn, written.as_bytes()).unwrap()
                    {
                        tally.lock().unwrap().increments.push(Increment {
                            rvn: held.rvn,
                            read,
                        });
                        landed += 1;
                    } else {
                        tally.lock().unwrap().lost_on_release += 1;
                    }
                }
            })
        })
        .collect();
    join_all("counting clients", clients, Duration::from_secs(600));
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();

    let total = CLIENTS * INCREMENTS;
    let last = connect()
        .query_one(
            "SELECT convert_from(data, 'UTF8') FROM pglock_get($1)",
            &[&name],
        )
        .unwrap();
    assert_eq!(
        last.get::<_, String>(0),
        total.to_string(),
        "the counter ends at {total}"
    );
    let mut increments = tally.increments.clone();
    increments.sort_by_key(|increment| increment.read);
    for (expected, increment) in increments.iter().enumerate() {
        assert_eq!(
            increment.read, expected as u64,
            "each increment builds on the previous one"
        );
    }
    for pair in increments.windows(2) {
        assert!(
            pair[0].rvn < pair[1].rvn,
            "successive holders' RVNs grow: {pair:?}"
        );
    }
    tally
}

#[test]
fn fifty_clients_count_to_exactly_one_thousand_through_one_lock() {
    let tally = run_counter(Duration::from_secs(5), 0.0, Duration::ZERO);
    assert_eq!(tally.increments.len(), CLIENTS * INCREMENTS);
}

#[test]
fn holders_that_stall_past_their_lease_lose_the_lock_loudly_and_lose_no_increment() {
    let lease = Duration::from_millis(150);
    let tally = run_counter(lease, 0.03, lease * 3);
    eprintln!(
        "stalls {}, lost on heartbeat {}, lost on release {}",
        tally.stalls, tally.lost_on_heartbeat, tally.lost_on_release
    );
    assert!(tally.stalls > 0, "some holders stalled");
    assert!(
        tally.lost_on_heartbeat > 0,
        "some stalled holders were taken over and told so by their heartbeat"
    );
}
