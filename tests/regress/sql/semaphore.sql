-- pglock_acquire_slot: at most `slots` holders of a semaphore, each holding one
-- slot, an ordinary lock named '<name>#<slot>'.  Waits here are short and their
-- outcome does not depend on timing.
\set SHOW_CONTEXT never

-- Free slots are taken lowest first; a full semaphore refuses with NULLs.
SELECT acquired, slot_name, rvn IS NOT NULL AS has_rvn FROM pglock_acquire_slot('pool', 'a', 2);
SELECT acquired, slot_name, rvn IS NOT NULL AS has_rvn FROM pglock_acquire_slot('pool', 'b', 2, '1 hour', 'b''s'::bytea);
SELECT * FROM pglock_acquire_slot('pool', 'c', 2);
SELECT name, owner, lease, data_bytes FROM pglock_locks WHERE name LIKE 'pool#%' ORDER BY name;

-- A slot is an ordinary lock: heartbeat, fence, get and release it by its name.
SELECT rvn AS s1 FROM pglock_get('pool#1') \gset
SELECT pglock_heartbeat('pool#1', 'a', :s1) AS s1 \gset
SELECT pglock_fence('pool#1', 'a', :s1) = :s1 AS fenced;
SELECT pglock_release('pool#1', 'a', :s1, keep => true, data => 'a''s'::bytea);
-- A released slot is free again, and its data stays behind.
SELECT acquired, slot_name FROM pglock_acquire_slot('pool', 'c', 2);
SELECT owner, data IS NULL AS no_data FROM pglock_get('pool#1');

-- The count is each caller's: one counting 3 takes a third slot, one counting 2
-- still finds the semaphore full.
SELECT acquired, slot_name FROM pglock_acquire_slot('pool', 'd', 3);
SELECT acquired, slot_name FROM pglock_acquire_slot('pool', 'e', 2);

-- Waiting: a slot whose holder went silent is taken over after its lease.
SELECT acquired, slot_name FROM pglock_acquire_slot('short', 'silent', 1, '50 milliseconds');
SELECT * FROM pglock_acquire_slot('short', 'waiter', 1, wait_timeout => '0');
SELECT acquired, slot_name FROM pglock_acquire_slot('short', 'waiter', 1, wait_timeout => '1 minute');
SELECT owner FROM pglock_get('short#1');
-- A wait that runs out: NULLs.
SELECT * FROM pglock_acquire_slot('pool', 'f', 2, wait_timeout => '50 milliseconds');

-- Errors.
SELECT * FROM pglock_acquire_slot(NULL, 'a', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('', 'a', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot(repeat('s', 251), 'a', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', NULL, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', repeat('o', 256), 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 2, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 2, '0');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 2, data => decode(repeat('00', 1048577), 'hex'));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_slot('pool', 'a', 2, wait_timeout => '-1 second');
\echo :LAST_ERROR_SQLSTATE
-- A wait needs READ COMMITTED; without one it is one pass, as pglock_acquire.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pglock_acquire_slot('pool', 'a', 2, wait_timeout => '1 second');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT acquired, slot_name FROM pglock_acquire_slot('rr', 'a', 2);
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM pglock_acquire_slot('pool', 'a', 2);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS slots FROM pglock_locks WHERE name LIKE 'pool#%';

SELECT count(*) FILTER (WHERE pglock_release(name, owner, rvn)) AS released
  FROM pglock_locks WHERE name LIKE 'pool#%' OR name LIKE 'short#%';
