-- pglock_acquire, pglock_acquire_wait, pglock_get and pglock_watch: the
-- functions that return a lock's row.
--
-- Declared here rather than generated, because their C entry points
-- (src/functions/rows.rs) return their one row in a single call instead of going
-- through pgrx's set-returning machinery.  Like every pglock function they run
-- as their caller and are not STRICT (a NULL argument raises 22004).
--
-- Their rows are named types rather than RETURNS TABLE: each statement that
-- calls a RETURNS TABLE function rebuilds the row's descriptor from the
-- function's argument lists, a tenth of the work of a refused attempt, while a
-- named type's descriptor comes from the type cache.

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

-- Waits, at most timeout (NULL: no limit), for the lock to be at another RVN
-- than rvn (NULL: for it to exist), then returns it as pglock_get does.
CREATE FUNCTION pglock_watch(
    name text,
    rvn bigint DEFAULT NULL,
    timeout interval DEFAULT '20 seconds'
) RETURNS SETOF pglock_get_result
ROWS 1 VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_watch_wrapper';
