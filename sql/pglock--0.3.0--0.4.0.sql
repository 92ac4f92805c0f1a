-- pglock 0.3.0 -> 0.4.0: waiting as fast and fair as PostgreSQL's own locks.
--
-- New: pglock_watch (wait for a lock to change), pglock_preloaded (whether the
-- server preloads pglock), the column waiters of pglock_locks, and the columns
-- waits, handoffs, wait_seconds, waiting and observations_forgotten of
-- pglock_stats (recreated: a function's result columns cannot change).  A
-- trigger on pglock.locks notes writes that bypass pglock's functions.
-- Changed, in the library: with pglock preloaded, waits queue in arrival order
-- and wake at once when the lock changes; the server observes each lock's last
-- write on a monotonic clock and takes over a holder whose RVN it saw stand
-- still for its lease, for any role and without observed_rvn; a takeover of
-- another role's lock needs that observation (no wall clock decides it); a
-- plain pglock_acquire does not jump ahead of waiters (it may answer with
-- rvn, owner and lease NULL).  The table and the sequence are unchanged: every
-- lock survives the update as it is.  The new behaviour needs a restart with
-- pglock in shared_preload_libraries; without preloading, waits poll as before.
--
-- This script is history once 0.4.0 is released: it must create exactly what a
-- fresh 0.4.0 install creates (tests/over_connections/tests/upgrade.rs compares the two catalogs).

\echo Use "ALTER EXTENSION pglock UPDATE TO '0.4.0'" to load this file. \quit

CREATE FUNCTION pglock_watch(
    name text,
    rvn bigint DEFAULT NULL,
    timeout interval DEFAULT '20 seconds'
) RETURNS SETOF pglock_get_result
ROWS 1 VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_watch_wrapper';

CREATE FUNCTION "pglock_preloaded"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_preloaded_wrapper';

DROP FUNCTION pglock_stats();
CREATE FUNCTION "pglock_stats"() RETURNS TABLE (
    "acquired" bigint,
    "taken_over" bigint,
    "refused" bigint,
    "heartbeats" bigint,
    "failed_heartbeats" bigint,
    "released" bigint,
    "force_released" bigint,
    "waits" bigint,
    "handoffs" bigint,
    "wait_seconds" double precision,
    "waiting" bigint,
    "observations_forgotten" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_stats_wrapper';

CREATE FUNCTION pglock."waiters"("name" TEXT) RETURNS INT
VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'waiters_wrapper';

CREATE OR REPLACE VIEW pglock_locks AS
SELECT l.name,
       l.owner,
       l.rvn,
       l.lease,
       l.released,
       l.holder_role,
       pg_catalog.octet_length(l.data) AS data_bytes,
       l.updated_at,
       pglock.waiters(l.name) AS waiters
  FROM pglock.locks AS l;

CREATE FUNCTION pglock."unseen_writes"() RETURNS TRIGGER
LANGUAGE c
AS 'MODULE_PATHNAME', 'unseen_writes_wrapper';

CREATE TRIGGER unseen_writes
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pglock.locks
    FOR EACH STATEMENT EXECUTE FUNCTION pglock.unseen_writes();

REVOKE ALL ON FUNCTION
    pglock_watch(text, bigint, interval),
    pglock_preloaded(),
    pglock_stats(),
    pglock.waiters(text),
    pglock.unseen_writes()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pglock_watch(text, bigint, interval),
    pglock_preloaded()
TO pglock_user;
GRANT EXECUTE ON FUNCTION pglock.waiters(text) TO pglock_user, pglock_monitor, pglock_admin;
GRANT EXECUTE ON FUNCTION pglock_stats() TO pglock_monitor, pglock_admin;
