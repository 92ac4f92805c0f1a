-- pglock_acquire and pglock_get: the two table functions of the hot path.
--
-- Declared here rather than generated, because their C entry points
-- (src/ffi/entry.rs) return their one row in a single call instead of going
-- through pgrx's set-returning machinery.  Like every pglock function they run
-- as their caller and are not STRICT (a NULL argument raises 22004).

CREATE FUNCTION pglock_acquire(
    name text,
    owner text,
    lease interval DEFAULT '20 seconds',
    data bytea DEFAULT NULL,
    replace_data boolean DEFAULT false,
    observed_rvn bigint DEFAULT NULL
) RETURNS TABLE (acquired boolean, rvn bigint, owner text, lease interval, data bytea)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_acquire_wrapper';

-- Reads the lock as it is now (a fresh snapshot each call, hence VOLATILE); its
-- data only for the holder's own role.
CREATE FUNCTION pglock_get(name text)
RETURNS TABLE (name text, owner text, rvn bigint, lease interval, data bytea, released boolean)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pglock_get_wrapper';
