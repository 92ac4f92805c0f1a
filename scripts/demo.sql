-- The pglock demo: two workers share one lock through a missed heartbeat.
-- Run by scripts/demo.sh against a private server; psql variables carry RVNs.
\set ON_ERROR_STOP on
\pset footer off
\set QUIET on

CREATE EXTENSION pglock;
CREATE ROLE demo_app LOGIN;
GRANT pglock_user TO demo_app;
\c - demo_app
\set QUIET on
\echo '-- as role demo_app (a member of pglock_user); leases are 2 seconds'

\echo
\echo '1. worker-a acquires "nightly-report", storing a checkpoint with it'
SELECT acquired, rvn, owner, lease, convert_from(data, 'UTF8') AS data
  FROM pglock_acquire('nightly-report', 'worker-a', '2 seconds', 'step 0'::bytea) \gset a_
SELECT :'a_acquired' AS acquired, :a_rvn AS rvn, :'a_owner' AS owner, :'a_data' AS data;

\echo '2. worker-b asks for it: refused, and told who holds it, at which RVN, for how long'
SELECT acquired, rvn AS seen_rvn, owner AS holder, lease AS holder_lease
  FROM pglock_acquire('nightly-report', 'worker-b', '2 seconds') \gset b_
SELECT :'b_acquired' AS acquired, :b_seen_rvn AS seen_rvn, :'b_holder' AS holder,
       :'b_holder_lease' AS holder_lease;

\echo '3. worker-a heartbeats (new checkpoint) while worker-b waits out the 2-second lease'
SELECT pglock_heartbeat('nightly-report', 'worker-a', :a_rvn, 'step 1'::bytea) AS a_rvn \gset
SELECT :a_rvn AS "worker-a's new rvn";
SELECT pg_sleep(2) \gset

\echo '4. worker-b claims with the RVN it saw: refused, the RVN moved, so worker-a is alive'
SELECT acquired, rvn AS seen_rvn, owner AS holder
  FROM pglock_acquire('nightly-report', 'worker-b', '2 seconds', observed_rvn => :b_seen_rvn) \gset b_
SELECT :'b_acquired' AS acquired, :b_seen_rvn AS seen_rvn, :'b_holder' AS holder;

\echo '5. worker-a hangs and misses its heartbeats; worker-b waits the lease again ...'
SELECT pg_sleep(2) \gset
\echo '   ... and claims with the RVN it saw: it stood still, so worker-b takes over,'
\echo '   inheriting worker-a''s checkpoint'
SELECT acquired, rvn, owner, convert_from(data, 'UTF8') AS data
  FROM pglock_acquire('nightly-report', 'worker-b', '2 seconds', observed_rvn => :b_seen_rvn) \gset b_
SELECT :'b_acquired' AS acquired, :b_rvn AS rvn, :'b_owner' AS owner, :'b_data' AS data;

\echo '6. worker-a wakes up and heartbeats: an error tells it to stop'
\set ON_ERROR_STOP off
SELECT pglock_heartbeat('nightly-report', 'worker-a', :a_rvn);
\set ON_ERROR_STOP on
\echo '   and its release returns false, changing nothing'
SELECT pglock_release('nightly-report', 'worker-a', :a_rvn) AS released;

\echo '7. worker-b finishes and releases, keeping the lock row with its final checkpoint'
SELECT pglock_release('nightly-report', 'worker-b', :b_rvn, keep => true,
                      data => 'done: step 3'::bytea) AS released;
SELECT name, owner, rvn, released, convert_from(data, 'UTF8') AS data
  FROM pglock_get('nightly-report');

\echo '8. the next run acquires at once (the lock is released) and starts from that checkpoint'
SELECT acquired, rvn, owner, convert_from(data, 'UTF8') AS data
  FROM pglock_acquire('nightly-report', 'worker-c', '2 seconds');
\echo 'Every write got a larger RVN: a downstream store can reject writes fenced by an older one.'
