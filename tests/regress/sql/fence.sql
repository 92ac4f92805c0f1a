-- pglock_fence: the holder checks that it holds the lock, and holds it against
-- every other writer until its transaction ends.  Each error is followed by its
-- SQLSTATE.  RVNs are shown relative to the ones the calls returned.
\set SHOW_CONTEXT never

SELECT rvn AS f_rvn FROM pglock_acquire('fenced', 'a', '1 hour') \gset
CREATE TABLE fenced_work (step integer, token bigint);

-- The holder fences its transaction: its RVN comes back, nothing is written, and
-- the name's lock is held in share mode until COMMIT.
BEGIN;
SELECT pglock_fence('fenced', 'a', :f_rvn) = :f_rvn AS fenced;
INSERT INTO fenced_work VALUES (1, :f_rvn);
SELECT mode, granted FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 20556 AND pid = pg_backend_pid();
COMMIT;
SELECT rvn = :f_rvn AS rvn_unchanged, lease, released FROM pglock_get('fenced');
SELECT count(*) AS locks_held_after_commit FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- Several fences in one transaction, and a heartbeat after one, are fine.
BEGIN;
SELECT pglock_fence('fenced', 'a', :f_rvn) = :f_rvn AS fenced;
SELECT pglock_fence('fenced', 'a', :f_rvn) = :f_rvn AS fenced_again;
SELECT pglock_heartbeat('fenced', 'a', :f_rvn) > :f_rvn AS renewed;
ROLLBACK;

-- Not held: the heartbeat's error and DETAIL; the transaction's writes roll back.
SELECT pglock_heartbeat('fenced', 'a', :f_rvn) AS f_new \gset
BEGIN;
INSERT INTO fenced_work VALUES (2, :f_rvn);
SELECT pglock_fence('fenced', 'a', :f_rvn);
\echo :LAST_ERROR_SQLSTATE
COMMIT;
SELECT step FROM fenced_work ORDER BY step;
SELECT pglock_fence('fenced', 'b', :f_new);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('no such lock', 'a', :f_new);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release('fenced', 'a', :f_new, keep => true);
SELECT rvn AS f_kept FROM pglock_get('fenced') \gset
SELECT pglock_fence('fenced', 'a', :f_kept);
\echo :LAST_ERROR_SQLSTATE

-- Another role's lock, even with its owner and RVN: 42501.
CREATE ROLE regress_fence_other;
GRANT pglock_user TO regress_fence_other;
SELECT rvn AS f_theirs FROM pglock_acquire('fenced-theirs', 'a', '1 hour') \gset
SET ROLE regress_fence_other;
SELECT pglock_fence('fenced-theirs', 'a', :f_theirs);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- REPEATABLE READ: a fence first in the transaction works as in READ COMMITTED.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pglock_fence('fenced-theirs', 'a', :f_theirs) = :f_theirs AS fenced;
COMMIT;

-- A read-only transaction has nothing to fence: 25006 at once.
BEGIN READ ONLY;
SELECT pglock_fence('fenced-theirs', 'a', :f_theirs);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Bad arguments.
SELECT pglock_fence(NULL, 'a', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('', 'a', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence(repeat('n', 256), 'a', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('x', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('x', '', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('x', 'a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_fence('x', 'a', 0);
\echo :LAST_ERROR_SQLSTATE

SELECT pglock_release('fenced-theirs', 'a', :f_theirs);
DROP TABLE fenced_work;
DROP OWNED BY regress_fence_other;
DROP ROLE regress_fence_other;
