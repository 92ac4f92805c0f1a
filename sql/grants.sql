-- Runs last in CREATE EXTENSION (finalize), once the functions exist.
-- Only members of pglock_user may call pglock; the functions reach the table as
-- its owner, so no grant on pglock.locks is ever needed.

REVOKE ALL ON FUNCTION
    pglock_acquire(text, text, interval, bytea, boolean, bigint),
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_heartbeat(text, text, bigint, bytea, boolean, interval),
    pglock_release(text, text, bigint, boolean, bytea),
    pglock_release_all(text, boolean),
    pglock_get(text),
    pglock_watch(text, bigint, interval),
    pglock_preloaded(),
    pglock_fence(text, text, bigint),
    pglock_heartbeat_many(text, text[], bigint[], interval),
    pglock_acquire_slot(text, text, integer, interval, bytea, interval),
    pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval),
    pglock.waiters(text),
    pglock.unseen_writes()
FROM PUBLIC;
REVOKE ALL ON PROCEDURE
    pglock_acquire_wait_committing(text, text, interval, bytea, boolean, interval, boolean, bigint)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    pglock_acquire(text, text, interval, bytea, boolean, bigint),
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_heartbeat(text, text, bigint, bytea, boolean, interval),
    pglock_release(text, text, bigint, boolean, bytea),
    pglock_release_all(text, boolean),
    pglock_get(text),
    pglock_watch(text, bigint, interval),
    pglock_preloaded(),
    pglock_fence(text, text, bigint),
    pglock_heartbeat_many(text, text[], bigint[], interval),
    pglock_acquire_slot(text, text, integer, interval, bytea, interval),
    pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval)
TO pglock_user;
-- The view pglock_locks counts each lock's waiters: its readers call this.
GRANT EXECUTE ON FUNCTION pglock.waiters(text) TO pglock_user, pglock_monitor, pglock_admin;
GRANT EXECUTE ON PROCEDURE
    pglock_acquire_wait_committing(text, text, interval, bytea, boolean, interval, boolean, bigint)
TO pglock_user;
-- Counters are for operators; forcing a release is for pglock_admin (and
-- superusers, who need no grant).
REVOKE ALL ON FUNCTION pglock_stats(), pglock_force_release(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pglock_stats() TO pglock_monitor, pglock_admin;
GRANT EXECUTE ON FUNCTION pglock_force_release(text) TO pglock_admin;

-- The committing procedure calls the step in pglock's schema: USAGE lets it name
-- the step; the tables and the sequence stay without grants.
GRANT USAGE ON SCHEMA pglock TO pglock_user;
