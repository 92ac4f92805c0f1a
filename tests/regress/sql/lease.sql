-- acquire, heartbeat, release and get: every result and every error.
-- A fresh database: RVNs start at 1.  Each error is followed by its SQLSTATE.
\set SHOW_CONTEXT never

-- A free lock is taken; a held one is refused, showing the holder.
SELECT * FROM pglock_acquire('job', 'a', '10 seconds', 'checkpoint-1'::bytea);
SELECT * FROM pglock_acquire('job', 'b');
SELECT * FROM pglock_get('job');
SELECT * FROM pglock_get('no such lock');

-- The holder heartbeats: a new RVN, optionally new data or a new lease.
SELECT pglock_heartbeat('job', 'a', 1);
SELECT pglock_heartbeat('job', 'a', 2, data => 'checkpoint-2'::bytea, lease => '30 seconds');
SELECT * FROM pglock_get('job');
-- An old RVN, another owner: refused with the reason.
SELECT pglock_heartbeat('job', 'a', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_heartbeat('job', 'b', 3);
\echo :LAST_ERROR_SQLSTATE

-- A takeover needs the RVN the caller saw standing still.
SELECT * FROM pglock_acquire('job', 'b', observed_rvn => 2);
SELECT * FROM pglock_acquire('job', 'b', observed_rvn => 3);
SELECT pglock_heartbeat('job', 'a', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release('job', 'a', 3);

-- Release keeping the row and data; the next holder finds the data.
SELECT pglock_release('job', 'b', 4, keep => true);
SELECT * FROM pglock_get('job');
SELECT pglock_heartbeat('job', 'b', 5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('job', 'c');
SELECT * FROM pglock_acquire('job2', 'c', data => 'x'::bytea);
SELECT pglock_release('job2', 'c', 7, keep => true, data => 'y'::bytea);
SELECT * FROM pglock_acquire('job2', 'd', replace_data => true);
SELECT pglock_release('job2', 'd', 9);
SELECT * FROM pglock_get('job2');
SELECT pglock_heartbeat('job2', 'd', 9);
\echo :LAST_ERROR_SQLSTATE

-- Bad arguments: a specific SQLSTATE each, nothing written.
SELECT * FROM pglock_acquire(NULL, 'a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('', 'a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire(repeat('n', 256), 'a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', repeat('é', 256));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', '0');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', '1 day 1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', data => decode(repeat('00', 1048577), 'hex'));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', replace_data => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire('x', 'a', observed_rvn => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_heartbeat('x', 'a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_heartbeat('x', 'a', -5);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_heartbeat('x', 'a', 1, lease => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release('x', 'a', 1, keep => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release('x', 'a', 1, data => 'lost'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_get(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_get('');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS locks FROM pglock_locks;

-- Limits: 255 characters (not bytes) and exactly 1 MiB of data are allowed.
SELECT acquired, rvn, length(owner) FROM pglock_acquire(repeat('é', 255), repeat('é', 255), '1 day',
       decode(repeat('00', 1048576), 'hex'));
SELECT octet_length(data) FROM pglock_get(repeat('é', 255));
