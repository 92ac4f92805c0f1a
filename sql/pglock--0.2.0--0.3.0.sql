-- pglock 0.2.0 -> 0.3.0: trust under hostile conditions.
--
-- Changed: every function runs as its caller (SECURITY INVOKER, no SET clauses):
-- the acting role is current_user, and pglock's statements run as the table's
-- owner from inside (see src/store.rs).  pglock_get is VOLATILE (it reads a
-- fresh snapshot each call).  pglock_acquire, pglock_acquire_wait and
-- pglock_get return the named row types pglock_acquire_result and
-- pglock_get_result (with the same columns as before).  pglock_stats gains force_released.  The committing
-- procedure no longer commits before its first step; the step refuses to start
-- where the procedure could not commit.
-- New: row-level security on pglock.locks (nobody but the owner reads or writes
-- it), the table pglock.name_lock_secret that keys name locks, the role
-- pglock_admin and pglock_force_release for it; pglock_fence,
-- pglock_heartbeat_many and semaphores (pglock_acquire_slot).  pglock refuses databases whose
-- encoding is not UTF8.  The table and the sequence are unchanged, so every lock
-- survives the update as it is.
--
-- This script is history once 0.3.0 is released: it must create exactly what a
-- fresh 0.3.0 install creates (tests/upgrade.rs compares the two catalogs).

\echo Use "ALTER EXTENSION pglock UPDATE TO '0.3.0'" to load this file. \quit

DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'pglock: this database''s encoding is %; pglock needs UTF8',
                pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create a database with ENCODING ''UTF8'' (from template0) for pglock.';
    END IF;
END
$$;

ALTER TABLE pglock.locks ENABLE ROW LEVEL SECURITY;

CREATE TABLE pglock.name_lock_secret (secret bytea NOT NULL);
INSERT INTO pglock.name_lock_secret (secret)
SELECT pg_catalog.decode(pg_catalog.md5(pg_catalog.concat(
           pg_catalog.gen_random_uuid(), pg_catalog.gen_random_uuid())), 'hex');
REVOKE ALL ON pglock.name_lock_secret FROM PUBLIC;
ALTER TABLE pglock.name_lock_secret ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'pglock_admin') THEN
        CREATE ROLE pglock_admin NOLOGIN;
    END IF;
END
$$;

ALTER FUNCTION pglock_heartbeat(text, text, bigint, bytea, boolean, interval)
    SECURITY INVOKER RESET ALL;
ALTER FUNCTION pglock_release(text, text, bigint, boolean, bytea)
    SECURITY INVOKER RESET ALL;
ALTER FUNCTION pglock_release_all(text, boolean)
    SECURITY INVOKER RESET ALL;
ALTER FUNCTION pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval)
    SECURITY INVOKER RESET ALL;

-- The functions that return a lock's row return named types (their columns are
-- unchanged): the functions are created anew, as in sql/lease_functions.sql.
DROP FUNCTION pglock_acquire(text, text, interval, bytea, boolean, bigint);
DROP FUNCTION pglock_acquire_wait(text, text, interval, bytea, boolean, interval);
DROP FUNCTION pglock_get(text);

CREATE TYPE pglock_acquire_result AS (
    acquired boolean,
    rvn bigint,
    owner text,
    lease interval,
    data bytea
);

CREATE FUNCTION pglock_acquire(
    name text,
    owner text,
    lease interval DEFAULT '20 seconds',
    data bytea DEFAULT NULL,
    replace_data boolean DEFAULT false,
    observed_rvn bigint DEFAULT NULL
) RETURNS SETOF pglock_acquire_result
ROWS 1 VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_acquire_wrapper';

-- Waits at most wait_timeout (NULL: no limit) for the lock, in one statement:
-- see sql/waiting.sql for the procedure that commits between steps.
CREATE FUNCTION pglock_acquire_wait(
    name text,
    owner text,
    lease interval DEFAULT '20 seconds',
    data bytea DEFAULT NULL,
    replace_data boolean DEFAULT false,
    wait_timeout interval DEFAULT NULL
) RETURNS SETOF pglock_acquire_result
ROWS 1 VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_acquire_wait_wrapper';

CREATE TYPE pglock_get_result AS (
    name text,
    owner text,
    rvn bigint,
    lease interval,
    data bytea,
    released boolean
);

-- Reads the lock as it is now (a fresh snapshot each call, hence VOLATILE); its
-- data only for the holder's own role.
CREATE FUNCTION pglock_get(name text)
RETURNS SETOF pglock_get_result
ROWS 1 VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_get_wrapper';

DROP FUNCTION pglock_stats();
CREATE FUNCTION "pglock_stats"() RETURNS TABLE (
	"acquired" bigint,
	"taken_over" bigint,
	"refused" bigint,
	"heartbeats" bigint,
	"failed_heartbeats" bigint,
	"released" bigint,
	"force_released" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_stats_wrapper';

CREATE FUNCTION "pglock_force_release"(
	"name" TEXT
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_force_release_wrapper';

CREATE OR REPLACE PROCEDURE pglock_acquire_wait_committing(
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

CREATE FUNCTION "pglock_fence"(
	"name" TEXT,
	"owner" TEXT,
	"rvn" bigint
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_fence_wrapper';

CREATE FUNCTION "pglock_heartbeat_many"(
	"owner" TEXT,
	"names" TEXT[],
	"rvns" bigint[],
	"lease" interval DEFAULT NULL
) RETURNS TABLE (
	"name" TEXT,
	"rvn" bigint,
	"renewed" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_heartbeat_many_wrapper';

CREATE FUNCTION "pglock_acquire_slot"(
	"name" TEXT,
	"owner" TEXT,
	"slots" INT,
	"lease" interval DEFAULT '20 seconds',
	"data" bytea DEFAULT NULL,
	"wait_timeout" interval DEFAULT '0'
) RETURNS TABLE (
	"acquired" bool,
	"slot_name" TEXT,
	"rvn" bigint
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_acquire_slot_wrapper';

REVOKE ALL ON FUNCTION
    pglock_acquire(text, text, interval, bytea, boolean, bigint),
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_get(text),
    pglock_fence(text, text, bigint),
    pglock_heartbeat_many(text, text[], bigint[], interval),
    pglock_acquire_slot(text, text, integer, interval, bytea, interval)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pglock_acquire(text, text, interval, bytea, boolean, bigint),
    pglock_acquire_wait(text, text, interval, bytea, boolean, interval),
    pglock_get(text),
    pglock_fence(text, text, bigint),
    pglock_heartbeat_many(text, text[], bigint[], interval),
    pglock_acquire_slot(text, text, integer, interval, bytea, interval)
TO pglock_user;

REVOKE ALL ON FUNCTION pglock_stats(), pglock_force_release(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pglock_stats() TO pglock_monitor, pglock_admin;
GRANT EXECUTE ON FUNCTION pglock_force_release(text) TO pglock_admin;
GRANT SELECT ON pglock_locks TO pglock_admin;
