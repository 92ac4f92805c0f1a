//! Typed lock data (feature `serde`) against the real server: what the Rust
//! client writes, a PL/pgSQL job reads as `jsonb` with
//! `convert_from(data, 'UTF8')::jsonb`, and what the job writes back, the client
//! reads as the same Rust type.

mod common;

use common::{client, ms, superuser, unique};
use pglock_client::{AcquireOptions, Error, TryAcquireOutcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    day: String,
    rows: u64,
    tables: Vec<String>,
}

/// A step of a checkpointed job in PL/pgSQL: takes the lock, reads the
/// checkpoint as jsonb, adds 10 rows and a table, and releases the lock keeping
/// the new checkpoint. Returns the checkpoint it read, as jsonb.
const PLPGSQL_STEP: &str = "
CREATE FUNCTION pg_temp.export_step(lock_name text, worker text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    got        boolean;
    token      bigint;
    checkpoint jsonb;
    next       jsonb;
BEGIN
    SELECT acquired, rvn, convert_from(data, 'UTF8')::jsonb
      INTO got, token, checkpoint
      FROM pglock_acquire(lock_name, worker, '10 seconds');
    IF NOT got THEN
        RAISE EXCEPTION 'lock % is held', lock_name;
    END IF;
    next := jsonb_set(checkpoint, '{rows}', to_jsonb((checkpoint->>'rows')::bigint + 10));
    next := jsonb_set(next, '{tables}', (next->'tables') || to_jsonb('orders'::text));
    PERFORM pglock_release(lock_name, worker, token, keep => true,
                           data => convert_to(next::text, 'UTF8'));
    RETURN checkpoint;
END
$$";

/// Rust writes a checkpoint at acquire and at release; PL/pgSQL reads the
/// second as jsonb and writes the next; Rust reads that back typed.
#[tokio::test]
async fn a_checkpoint_goes_from_rust_to_plpgsql_and_back() {
    let name = unique("typed");
    let client = client(&unique("rust-worker"), ms(10_000), ms(2_000)).await;
    let first = Checkpoint {
        day: "2024-06-29".into(),
        rows: 0,
        tables: vec![],
    };
    let options = AcquireOptions::new().data_value(&first).unwrap();
    let lock = client.acquire_with(&name, &options).await.unwrap();
    assert_eq!(lock.data_as::<Checkpoint>().unwrap(), Some(first));
    let done = Checkpoint {
        day: "2024-06-30".into(),
        rows: 42,
        tables: vec!["customers".into(), "invoices".into()],
    };
    lock.release_keeping_value(&done).await.unwrap();

    let sql = superuser().await;
    sql.batch_execute(PLPGSQL_STEP).await.unwrap();
    let read: String = sql
        .query_one(
            "SELECT pg_temp.export_step($1, 'plpgsql-worker')::text",
            &[&name],
        )
        .await
        .expect("the PL/pgSQL step")
        .get(0);
    assert_eq!(
        read,
        r#"{"day": "2024-06-30", "rows": 42, "tables": ["customers", "invoices"]}"#
    );

    let lock = client.acquire(&name).await.unwrap();
    let next = Checkpoint {
        day: "2024-06-30".into(),
        rows: 52,
        tables: vec!["customers".into(), "invoices".into(), "orders".into()],
    };
    assert_eq!(lock.data_as::<Checkpoint>().unwrap(), Some(next.clone()));
    let info = client.get(&name).await.unwrap().expect("the lock exists");
    assert_eq!(info.data_as::<Checkpoint>().unwrap(), Some(next.clone()));

    // A rival is refused and sees the same checkpoint typed.
    let rival = common::client(&unique("rival"), ms(10_000), ms(2_000)).await;
    match rival.try_acquire(&name).await.unwrap() {
        TryAcquireOutcome::Held(holder) => {
            assert_eq!(holder.data_as::<Checkpoint>().unwrap(), Some(next));
        }
        TryAcquireOutcome::Acquired(lock) => panic!("acquired a held lock: {lock:?}"),
        TryAcquireOutcome::Queued => panic!("nobody waits for it"),
    }
    lock.release().await.unwrap();
}

/// SQL writes the checkpoint first (as a PL/pgSQL job starting afresh would);
/// Rust reads it; data that is not the JSON of the type asked for is an error,
/// and no data is `None`.
#[tokio::test]
async fn sql_written_checkpoints_read_typed_and_bad_ones_fail() {
    let name = unique("typed-sql");
    let sql = superuser().await;
    sql.batch_execute(
        "CREATE FUNCTION pg_temp.seed(lock_name text) RETURNS void LANGUAGE plpgsql AS $$
         DECLARE token bigint;
         BEGIN
             SELECT rvn INTO token FROM pglock_acquire(lock_name, 'plpgsql-seed', '10 seconds');
             PERFORM pglock_release(lock_name, 'plpgsql-seed', token, keep => true,
                 data => convert_to(jsonb_build_object(
                     'day', '2024-07-01', 'rows', 7,
                     'tables', jsonb_build_array('ledger'))::text, 'UTF8'));
         END $$",
    )
    .await
    .unwrap();
    sql.execute("SELECT pg_temp.seed($1)", &[&name])
        .await
        .unwrap();

    let client = client(&unique("rust-reader"), ms(10_000), ms(2_000)).await;
    let lock = client.acquire(&name).await.unwrap();
    assert_eq!(
        lock.data_as::<Checkpoint>().unwrap(),
        Some(Checkpoint {
            day: "2024-07-01".into(),
            rows: 7,
            tables: vec!["ledger".into()],
        })
    );
    let error = lock.data_as::<Vec<u64>>().unwrap_err();
    assert!(matches!(error, Error::Data(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("lock data (JSON): invalid type: map"),
        "{error}"
    );
    lock.release_keeping(Some(b"not json")).await.unwrap();

    let lock = client.acquire(&name).await.unwrap();
    assert!(matches!(lock.data_as::<Checkpoint>(), Err(Error::Data(_))));
    lock.release().await.unwrap();
    let lock = client.acquire(&name).await.unwrap();
    assert_eq!(
        lock.data_as::<Checkpoint>().unwrap(),
        None,
        "released without keep"
    );
    lock.release().await.unwrap();
}
