-- The waiting acquire: results and errors.  Waits here are short and their
-- outcome does not depend on timing.
\set SHOW_CONTEXT never

SELECT * FROM pglock_acquire('w', 'holder', '50 milliseconds');
-- wait_timeout 0: one attempt.
SELECT * FROM pglock_acquire_wait('w', 'waiter', wait_timeout => '0');
-- The holder is silent: taken over after its 50 ms lease.
SELECT * FROM pglock_acquire_wait('w', 'waiter', '1 minute', 'mine'::bytea, wait_timeout => '1 minute');
SELECT pglock_heartbeat('w', 'holder', 1);
\echo :LAST_ERROR_SQLSTATE

-- The procedure returns (acquired, rvn) and commits.
CALL pglock_acquire_wait_committing('w', 'other', wait_timeout => '0');
CALL pglock_acquire_wait_committing('w2', 'other');
SELECT owner, rvn, released FROM pglock_get('w2');

-- Errors.
SELECT * FROM pglock_acquire_wait('w', 'x', wait_timeout => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_acquire_wait('w', '');
\echo :LAST_ERROR_SQLSTATE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pglock_acquire_wait('w', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
CALL pglock_acquire_wait_committing('w', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CALL pglock_acquire_wait_committing('w', 'x', lease => '2 days');
\echo :LAST_ERROR_SQLSTATE
