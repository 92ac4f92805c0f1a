//! Workers that keep a counter in one lock's data, each round under the lock:
//! what proves that two holders never overlap and no increment is lost.

use std::sync::atomic::{AtomicUsize, Ordering};

use pglock_client::Client;

use crate::common::{within, WAIT_LIMIT};

/// One worker of a counter kept in lock `name`'s data, `rounds` times: acquire
/// the lock, check that no other worker is `inside`, read the count and write it
/// back plus one with a keeping release. Each count read, with the fencing token
/// it was read under.
pub async fn increment_counter(
    client: &Client,
    name: &str,
    rounds: u64,
    inside: &AtomicUsize,
) -> Vec<(u64, i64)> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let lock = within(WAIT_LIMIT, "the lock", client.acquire(name))
            .await
            .unwrap_or_else(|error| panic!("acquire: {error}"));
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
        let count: u64 = match lock.data() {
            None => 0,
            Some(data) => std::str::from_utf8(data).unwrap().parse().unwrap(),
        };
        seen.push((count, lock.rvn()));
        tokio::task::yield_now().await;
        assert!(!lock.is_lost(), "lost while holding it briefly");
        inside.fetch_sub(1, Ordering::SeqCst);
        let next = (count + 1).to_string();
        lock.release_keeping(Some(next.as_bytes()))
            .await
            .unwrap_or_else(|error| panic!("release keeping the count: {error}"));
    }
    seen
}

/// What [`increment_counter`]'s workers read, together: every count from 0 to
/// `total` once, and fencing tokens that grow with the count.
pub fn assert_each_count_read_once(mut seen: Vec<(u64, i64)>, total: u64) {
    seen.sort();
    let counts: Vec<u64> = seen.iter().map(|(count, _)| *count).collect();
    assert_eq!(
        counts,
        (0..total).collect::<Vec<_>>(),
        "each count read once"
    );
    assert!(
        seen.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "fencing tokens grow with the count: {seen:?}"
    );
}
