//! Many real connections racing for one lock: exactly one wins each round, and the
//! winners' RVNs only grow.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pglock_tests::{acquire, connect, join_all, release, unique_name, Acquire, Rendezvous};

const CONNECTIONS: usize = 32;
const ROUNDS: usize = 100;

/// How long a whole race may take before the test fails naming it.
const RACE_LIMIT: Duration = Duration::from_secs(300);

/// Runs `attempt(worker, round, client)` on every connection each round, all
/// starting together, and returns the results by round.  A worker that fails
/// stops the others at the next rendezvous, and the test reports its failure.
fn race<F>(
    attempt: F,
    between_rounds: impl Fn(usize, &[Acquire]) + Send + Sync + 'static,
) -> Vec<Vec<Acquire>>
where
    F: Fn(usize, usize, &mut postgres::Client) -> Acquire + Send + Sync + 'static,
{
    let start = Rendezvous::new(CONNECTIONS);
    let done = Rendezvous::new(CONNECTIONS);
    let results = Arc::new(Mutex::new(vec![Vec::new(); ROUNDS]));
    let attempt = Arc::new(attempt);
    let between_rounds = Arc::new(between_rounds);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let (start, done, results) = (start.clone(), done.clone(), results.clone());
            let (attempt, between_rounds) = (attempt.clone(), between_rounds.clone());
            thread::spawn(move || {
                let (_start, _done) = (start.member(), done.member());
                let mut client = connect();
                for round in 0..ROUNDS {
                    start.wait();
                    let outcome = attempt(worker, round, &mut client);
                    results.lock().unwrap()[round].push(outcome);
                    // The last one through settles the round before anyone starts the next.
                    if done.wait() {
                        between_rounds(round, &results.lock().unwrap()[round]);
                    }
                }
            })
        })
        .collect();
    join_all("race workers", workers, RACE_LIMIT);
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

fn the_winner(round: usize, outcomes: &[Acquire]) -> Acquire {
    let winners: Vec<_> = outcomes.iter().filter(|outcome| outcome.acquired).collect();
    assert_eq!(
        winners.len(),
        1,
        "round {round}: exactly one winner, got {winners:?}"
    );
    let winner = winners[0].clone();
    for loser in outcomes.iter().filter(|outcome| !outcome.acquired) {
        assert_eq!(
            (&loser.owner, loser.rvn),
            (&winner.owner, winner.rvn),
            "round {round}: a loser sees the winner as holder"
        );
    }
    winner
}

#[test]
fn racing_for_a_free_lock_has_one_winner_per_round_and_rvns_grow() {
    let name = unique_name("race");
    let lock = name.clone();
    let results = race(
        move |worker, _, client| {
            acquire(client, &lock, &format!("worker-{worker}"), 30.0, None).expect("acquire")
        },
        {
            let name = name.clone();
            move |round, outcomes| {
                let winner = the_winner(round, outcomes);
                // Alternate deleting and keeping, so both ways back to free are raced.
                let keep = round % 2 == 0;
                assert!(release(&mut connect(), &name, &winner.owner, winner.rvn, keep).unwrap());
            }
        },
    );
    let rvns: Vec<i64> = results
        .iter()
        .enumerate()
        .map(|(round, outcomes)| the_winner(round, outcomes).rvn)
        .collect();
    assert!(
        rvns.windows(2).all(|pair| pair[0] < pair[1]),
        "winners' RVNs grow: {rvns:?}"
    );
}

#[test]
fn racing_to_take_over_a_silent_holder_has_one_winner_per_round() {
    let name = unique_name("takeover-race");
    let mut holder = connect();
    let first = acquire(&mut holder, &name, "holder", 30.0, None).unwrap();
    assert!(first.acquired);
    let observed = Arc::new(Mutex::new(first.rvn));
    let lock = name.clone();
    let seen = observed.clone();
    let results = race(
        move |worker, _, client| {
            // Everyone has seen the same RVN stand still and claims the lock with it.
            let rvn = *seen.lock().unwrap();
            acquire(client, &lock, &format!("worker-{worker}"), 30.0, Some(rvn)).expect("acquire")
        },
        move |round, outcomes| {
            let winner = the_winner(round, outcomes);
            // The winner in turn goes silent: next round takes over from it.
            let mut last = observed.lock().unwrap();
            assert!(winner.rvn > *last, "round {round}: takeover RVN grows");
            *last = winner.rvn;
        },
    );
    assert_eq!(results.len(), ROUNDS);
}

/// The session marked as holder of the churned lock, and every hold's RVN in order.
#[derive(Default)]
struct Holding {
    holder: Option<(String, i64)>,
    rvns: Vec<i64>,
}

#[test]
fn churn_on_one_name_never_has_two_holders_nor_needs_a_retry() {
    // Acquire-and-release (which deletes the row) as fast as 16 sessions can:
    // every call answers (a caller whose write loses a race re-reads under the
    // name's lock), none fails, and no two sessions ever hold the name at once.
    // A winner marks itself holder as soon as it wins and unmarks itself just
    // before its release, so two overlapping holds find the mark taken; while it
    // holds, the server shows it as the holder; its release finds the lock as it
    // left it; and the winners' RVNs grow in the order they held the lock.
    const SESSIONS: usize = 16;
    const ROUNDS: usize = 300;
    let name = unique_name("churn");
    let holding: Arc<Mutex<Holding>> = Arc::default();
    let threads: Vec<_> = (0..SESSIONS)
        .map(|n| {
            let (name, holding) = (name.clone(), holding.clone());
            thread::spawn(move || {
                let mut client = connect();
                let owner = format!("churner-{n}");
                let mut won = 0;
                for _ in 0..ROUNDS {
                    let outcome = acquire(&mut client, &name, &owner, 60.0, None)
                        .unwrap_or_else(|error| panic!("{owner}: {error}"));
                    if !outcome.acquired {
                        continue;
                    }
                    won += 1;
                    let mine = (owner.clone(), outcome.rvn);
                    let previous = {
                        let mut holding = holding.lock().unwrap();
                        holding.rvns.push(outcome.rvn);
                        holding.holder.replace(mine.clone())
                    };
                    assert_eq!(
                        previous, None,
                        "{owner} won RVN {} while another session held the lock",
                        outcome.rvn
                    );
                    let seen = client
                        .query_one("SELECT owner, rvn FROM pglock_get($1)", &[&name])
                        .unwrap();
                    let seen: (String, i64) = (seen.get(0), seen.get(1));
                    assert_eq!(seen, mine, "the server shows the holder");
                    let marked = holding.lock().unwrap().holder.take();
                    assert_eq!(marked, Some(mine));
                    assert!(
                        release(&mut client, &name, &owner, outcome.rvn, false).unwrap(),
                        "{owner}: the lock changed while it held it"
                    );
                }
                won
            })
        })
        .collect();
    let won: usize = join_all("churners", threads, RACE_LIMIT).iter().sum();
    assert!(won > 0);
    let holds = &holding.lock().unwrap().rvns;
    assert_eq!(holds.len(), won);
    assert!(
        holds.windows(2).all(|pair| pair[0] < pair[1]),
        "holders' RVNs grow in the order they held the lock"
    );
}
