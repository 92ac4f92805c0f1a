-- What operators read: every lock, without write access and without data.
--
-- The view runs with its owner's rights (the extension's owner, to whom the
-- table's row-level security does not apply), so pglock_monitor needs no grant
-- on pglock.locks itself.  It shows the size of each lock's data, not the data:
-- that may be a job's private checkpoint.

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
       l.updated_at,
       -- Sessions of this server waiting for the lock (0 without preloading).
       pglock.waiters(l.name) AS waiters
  FROM pglock.locks AS l;

REVOKE ALL ON pglock_locks FROM PUBLIC;
GRANT SELECT ON pglock_locks TO pglock_monitor, pglock_user, pglock_admin;
