-- pglock 0.1.0 -> 0.2.0
--
-- Changed: pglock.locks.holder_role is a regrole (was an oid); fillfactor 92.
-- New: the waiting acquire (pglock_acquire_wait, and the procedure
-- pglock_acquire_wait_committing with its step pglock.acquire_wait_step),
-- pglock_release_all, the view pglock_locks with the role pglock_monitor, and
-- pglock_stats.  The table, the sequence and the four 0.1.0 functions are
-- unchanged, so every lock survives the update as it is.
--
-- This script is history: it must create exactly what a fresh 0.2.0 install
-- creates (tests/upgrade.rs compares the two catalogs), and never changes once
-- 0.2.0 is released.

\echo Use "ALTER EXTENSION pglock UPDATE TO '0.2.0'" to load this file. \quit

-- Locks name their holder's role as regrole, so that pg_dump carries role
-- names rather than OIDs that mean nothing (or another role) elsewhere.
-- Binary-compatible with oid: no rewrite, every lock stays as it is.
ALTER TABLE pglock.locks ALTER COLUMN holder_role TYPE pg_catalog.regrole;

-- Fillfactor 92 instead of 50: at 50, pages stopped taking inserts before reads
-- pruned them, so acquire-and-release traffic kept extending the table (see
-- sql/schema.sql).  Applies to pages written from now on.
ALTER TABLE pglock.locks SET (fillfactor = 92);

CREATE FUNCTION "pglock_acquire_wait"(
    "name" TEXT,
    "owner" TEXT,
    "lease" interval DEFAULT '20 seconds',
    "data" bytea DEFAULT NULL,
    "replace_data" bool DEFAULT false,
    "wait_timeout" interval DEFAULT NULL
) RETURNS TABLE (
    "acquired" bool,
    "rvn" bigint,
    "owner" TEXT,
    "lease" interval,
    "data" bytea
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_acquire_wait_wrapper';

CREATE FUNCTION "pglock_release_all"(
    "owner" TEXT,
    "keep" bool DEFAULT false
) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_release_all_wrapper';

CREATE FUNCTION "pglock_stats"() RETURNS TABLE (
    "acquired" bigint,
    "taken_over" bigint,
    "refused" bigint,
    "heartbeats" bigint,
    "failed_heartbeats" bigint,
    "released" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_stats_wrapper';

CREATE FUNCTION pglock."acquire_wait_step"(
    "name" TEXT,
    "owner" TEXT,
    "lease" interval,
    "data" bytea,
    "replace_data" bool,
    "wait_timeout" interval,
    "started" bigint,
    "watched_rvn" bigint,
    "watched_since" bigint,
    "watched_lease" interval
) RETURNS TABLE (
    "acquired" bool,
    "rvn" bigint,
    "owner" TEXT,
    "lease" interval,
    "data" bytea,
    "timed_out" bool,
    "started" bigint,
    "watched_since" bigint
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'acquire_wait_step_wrapper';

CREATE PROCEDURE pglock_acquire_wait_committing(
    name text,
    owner text,
    lease interval DEFAULT '20 seconds',
    data bytea DEFAULT NULL,
    replace_data boolean DEFAULT false,
    wait_timeout interval DEFAULT NULL,
    INOUT acquired boolean DEFAULT NULL,
    INOUT rvn bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $procedure$
DECLARE
    -- Readings of the backend's monotonic clock, from the step function: what
    -- one step saw of the holder, for the next.
    started       bigint;
    watched_rvn   bigint;
    watched_since bigint;
    watched_lease interval;
    step          record;
BEGIN
    -- Inside a transaction block (or a function) a procedure cannot commit: fail
    -- now with 2D000 rather than after the first step.
    COMMIT;
    LOOP
        SELECT s.acquired, s.rvn, s.lease, s.timed_out, s.started, s.watched_since
          INTO step
          FROM pglock.acquire_wait_step(
                   name, owner, lease, data, replace_data, wait_timeout,
                   started, watched_rvn, watched_since, watched_lease) AS s;
        IF step.acquired OR step.timed_out THEN
            acquired := step.acquired;
            rvn := step.rvn;
            -- Commit the takeover too: others see the new holder at once, and the
            -- per-name lock is not held through the caller's next statements.
            COMMIT;
            RETURN;
        END IF;
        started := step.started;
        watched_rvn := step.rvn;
        watched_since := step.watched_since;
        watched_lease := step.lease;
        COMMIT;
    END LOOP;
END
$procedure$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pglock_monitor') THEN
        CREATE ROLE pglock_monitor NOLOGIN;
    END IF;
END
$$;

CREATE VIEW pglock_locks AS
SELECT l.name,
       l.owner,
       l.rvn,
       l.lease,
       l.released,
       l.holder_role,
       pg_catalog.octet_length(l.data) AS data_bytes,
       -- Wall-clock time of the last write.  pglock never uses it (expiry is
       -- decided by RVNs); updated_at + lease in the past flags a lock whose
       -- holder may have stopped heartbeating.
       l.updated_at
  FROM pglock.locks AS l;

REVOKE ALL ON pglock_locks FROM PUBLIC;
GRANT SELECT ON pglock_locks TO pglock_monitor, pglock_user;

REVOKE ALL ON FUNCTION
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_release_all(text, boolean),
    pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval),
    pglock_stats()
FROM PUBLIC;
REVOKE ALL ON PROCEDURE
    pglock_acquire_wait_committing(text, text, interval, bytea, boolean, interval, boolean, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_release_all(text, boolean),
    pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval)
TO pglock_user;
GRANT EXECUTE ON PROCEDURE
    pglock_acquire_wait_committing(text, text, interval, bytea, boolean, interval, boolean, bigint)
TO pglock_user;
GRANT EXECUTE ON FUNCTION pglock_stats() TO pglock_monitor;
GRANT USAGE ON SCHEMA pglock TO pglock_user;

ALTER FUNCTION pglock_acquire_wait(text, text, interval, bytea, boolean, interval) SET enable_seqscan = off;
ALTER FUNCTION pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval) SET enable_seqscan = off;
