//! Many clients, each on its own connection, contending for one lock.

mod common;
#[path = "common/counter.rs"]
mod counter;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{client_with, join_failing_fast, ms, unique, within, WAIT_LIMIT};
use counter::{assert_each_count_read_once, increment_counter};
use pglock_client::ClientConfig;

const CLIENTS: usize = 20;
const ROUNDS: u64 = 5;

fn config(owner: String) -> ClientConfig {
    ClientConfig::new(owner, ms(2_000), ms(500)).with_poll_interval(ms(10))
}

/// Each holder reads the counter from the lock's data and writes it back plus one
/// with a keeping release. Never two holders at once, not one increment lost, and
/// each holder's fencing token is larger than the previous holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_increment_a_counter_kept_in_the_lock() {
    let name = unique("counter");
    let inside = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let (name, inside) = (name.clone(), Arc::clone(&inside));
        workers.push(tokio::spawn(async move {
            let client = client_with(config(unique(&format!("w{worker}")))).await;
            increment_counter(&client, &name, ROUNDS, &inside).await
        }));
    }
    let mut seen = Vec::new();
    for worker in join_failing_fast(workers).await {
        seen.extend(worker);
    }

    let total = CLIENTS as u64 * ROUNDS;
    let client = client_with(config(unique("reader"))).await;
    let info = client.get(&name).await.unwrap().expect("the lock is kept");
    assert_eq!(info.data, Some(total.to_string().into_bytes()));
    assert!(info.released);

    assert_each_count_read_once(seen, total);
}

/// `with_lock` around an unguarded read-modify-write: no update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_lock_serializes_an_unguarded_read_modify_write() {
    const WORKERS: usize = 10;
    let name = unique("with-lock");
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (name, counter, inside) = (name.clone(), Arc::clone(&counter), Arc::clone(&inside));
        workers.push(tokio::spawn(async move {
            let client = client_with(config(unique(&format!("v{worker}")))).await;
            for _ in 0..ROUNDS {
                let (counter, inside) = (Arc::clone(&counter), Arc::clone(&inside));
                let with_lock = client.with_lock(&name, |lost| async move {
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let read = counter.load(Ordering::SeqCst);
                    tokio::time::sleep(ms(1)).await;
                    counter.store(read + 1, Ordering::SeqCst);
                    assert!(!lost.is_cancelled());
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
                within(WAIT_LIMIT, "with_lock", with_lock)
                    .await
                    .expect("with_lock");
            }
        }));
    }
    join_failing_fast(workers).await;
    assert_eq!(counter.load(Ordering::SeqCst), WORKERS as u64 * ROUNDS);
    let client = client_with(config(unique("reader"))).await;
    assert_eq!(client.get(&name).await.unwrap(), None, "released");
}
