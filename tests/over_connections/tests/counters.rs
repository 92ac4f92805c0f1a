//! pglock_stats: counters in shared memory when pglock is preloaded (the test
//! server runs with shared_preload_libraries = 'pglock').  Each kind of call
//! moves exactly its counter, also when many sessions count at once.

use std::thread;

use pglock_tests::{
    acquire, connect, heartbeat, join_all, release, unique_name, Client, WAIT_LIMIT,
};

const COUNTERS: [&str; 6] = [
    "acquired",
    "taken_over",
    "refused",
    "heartbeats",
    "failed_heartbeats",
    "released",
];

fn stats(client: &mut Client) -> Vec<i64> {
    let row = client
        .query_one("SELECT * FROM pglock_stats()", &[])
        .unwrap();
    (0..COUNTERS.len()).map(|i| row.get(i)).collect()
}

fn delta(before: &[i64], after: &[i64]) -> Vec<(&'static str, i64)> {
    COUNTERS
        .iter()
        .zip(before.iter().zip(after))
        .map(|(name, (b, a))| (*name, a - b))
        .collect()
}

#[test]
fn every_kind_of_call_moves_its_counter_exactly() {
    let mut client = connect();
    let before = stats(&mut client);

    let name = unique_name("counted");
    let held = acquire(&mut client, &name, "a", 60.0, None).unwrap(); // acquired
    acquire(&mut client, &name, "b", 60.0, None).unwrap(); // refused
    let renewed = heartbeat(&mut client, &name, "a", held.rvn).unwrap(); // heartbeat
    heartbeat(&mut client, &name, "a", held.rvn).unwrap_err(); // failed heartbeat
    let taken = acquire(&mut client, &name, "b", 60.0, Some(renewed)).unwrap(); // taken over
    assert!(taken.acquired);
    assert!(release(&mut client, &name, "b", taken.rvn, false).unwrap()); // released
    assert!(!release(&mut client, &name, "b", taken.rvn, false).unwrap()); // not counted
    let other = unique_name("counted");
    acquire(&mut client, &other, "c", 60.0, None).unwrap(); // acquired
    let released: i64 = client
        .query_one("SELECT pglock_release_all('c')", &[])
        .unwrap()
        .get(0); // released
    assert_eq!(released, 1);
    // heartbeat_many: one renewed, one lost; slots: one taken, one refused.
    let many = unique_name("counted-many");
    let kept = acquire(&mut client, &many, "m", 60.0, None).unwrap(); // acquired
    let renewals: i64 = client
        .query_one(
            "SELECT count(*) FILTER (WHERE renewed) FROM pglock_heartbeat_many('m', \
                    ARRAY[$1, $1 || '-lost'], ARRAY[$2::bigint, 1])",
            &[&many, &kept.rvn],
        )
        .unwrap()
        .get(0); // a heartbeat and a failed one
    assert_eq!(renewals, 1);
    let semaphore = unique_name("counted-slots");
    for owner in ["s1", "s2"] {
        client
            .query_one(
                "SELECT acquired FROM pglock_acquire_slot($1, $2, 1)",
                &[&semaphore, &owner],
            )
            .unwrap(); // acquired, then refused
    }

    let after = stats(&mut client);
    assert_eq!(
        delta(&before, &after),
        [
            ("acquired", 4),
            ("taken_over", 1),
            ("refused", 2),
            ("heartbeats", 2),
            ("failed_heartbeats", 2),
            ("released", 2)
        ]
    );

    // Sixteen sessions at once: no increment lost.
    const SESSIONS: usize = 16;
    const ROUNDS: i64 = 50;
    let before = stats(&mut client);
    let workers: Vec<_> = (0..SESSIONS)
        .map(|_| {
            thread::spawn(|| {
                let mut client = connect();
                let name = unique_name("counted-busy");
                for _ in 0..ROUNDS {
                    let held = acquire(&mut client, &name, "busy", 60.0, None).unwrap();
                    assert!(release(&mut client, &name, "busy", held.rvn, false).unwrap());
                }
            })
        })
        .collect();
    join_all("counted sessions", workers, WAIT_LIMIT * 4);
    let after = stats(&mut client);
    let moved = delta(&before, &after);
    assert_eq!(moved[0], ("acquired", SESSIONS as i64 * ROUNDS));
    assert_eq!(moved[5], ("released", SESSIONS as i64 * ROUNDS));
}
