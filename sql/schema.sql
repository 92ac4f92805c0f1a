-- The table pglock owns, its RVN sequence, the secret that keys its name locks,
-- and the roles that may use and operate pglock.
-- Runs first in CREATE EXTENSION (bootstrap), before the functions exist.

-- Lock names and owners are text that pglock handles as UTF-8: in a database of
-- another encoding they could not be read, so refuse to install there.
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

-- Everything pglock stores lives in its own schema; only the extension's
-- functions read or write it, acting as its owner.
CREATE SCHEMA pglock;
REVOKE ALL ON SCHEMA pglock FROM PUBLIC;

-- One sequence for the whole extension: every write to any lock draws its new
-- RVN here, so RVNs grow strictly and double as fencing tokens.  CACHE 1 (the
-- default) keeps values ordered across sessions; a per-session cache would not.
CREATE SEQUENCE pglock.rvn_seq AS bigint CACHE 1;

CREATE TABLE pglock.locks (
    name        text        NOT NULL PRIMARY KEY,
    owner       text        NOT NULL,
    rvn         bigint      NOT NULL,
    lease       interval    NOT NULL,
    data        bytea,
    released    boolean     NOT NULL DEFAULT false,
    -- The role that wrote the lock; only it may heartbeat or release it.
    -- regrole, not oid: pg_dump writes the role's name, so a restore into
    -- another cluster (where OIDs differ, or name other roles) maps each lock
    -- to the role of that name, and fails loudly if there is none.  (A lock
    -- whose role was dropped dumps as a bare OID and restores as one.)
    holder_role regrole     NOT NULL,
    -- Wall-clock time of the last write, for operators only: expiry never
    -- depends on it.
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
    -- No CHECK constraints: the functions (the only writers) validate every
    -- argument first, and PostgreSQL re-parses CHECK expressions on every write,
    -- a tenth of a heartbeat's CPU.
)
-- Heartbeats rewrite a row without touching the indexed column; free room on
-- each page lets them stay HOT updates instead of bloating the table and index.
-- Why 92 and not less: an insert skips a page with under (100 - fillfactor)% free
-- (plus the row), but a read prunes dead rows from a page only once it has under
-- max(that, 10%) free.  Below about 91 a page can stop taking inserts before any
-- read prunes it, so acquire-and-release traffic (insert, delete) extends the
-- table instead of reusing pages: 6 times the growth at fillfactor 50.  At 92,
-- pruning comes first and heartbeats still find room (100% HOT in the benchmark).
WITH (fillfactor = 92);

REVOKE ALL ON pglock.locks, pglock.rvn_seq FROM PUBLIC;

-- Nobody reads or writes the table but pglock's functions, which act as its
-- owner: row-level security without a policy denies every other role, members of
-- pg_write_all_data and pg_read_all_data included (the owner is exempt).
ALTER TABLE pglock.locks ENABLE ROW LEVEL SECURITY;

-- The key of the hash that maps each lock name to the lock its writers take
-- (src/name_lock.rs), drawn at random for each installation and readable by no
-- role but the owner: nobody can compute colliding names offline.  Not dumped: a
-- restore draws a new one.
CREATE TABLE pglock.name_lock_secret (secret bytea NOT NULL);
INSERT INTO pglock.name_lock_secret (secret)
SELECT pg_catalog.decode(pg_catalog.md5(pg_catalog.concat(
           pg_catalog.gen_random_uuid(), pg_catalog.gen_random_uuid())), 'hex');
REVOKE ALL ON pglock.name_lock_secret FROM PUBLIC;
ALTER TABLE pglock.name_lock_secret ENABLE ROW LEVEL SECURITY;

-- pg_dump must carry the locks and the RVN sequence: a restore that restarted RVNs
-- at 1 would hand out fencing tokens lower than ones already issued.
SELECT pg_catalog.pg_extension_config_dump('pglock.locks', '');
SELECT pg_catalog.pg_extension_config_dump('pglock.rvn_seq', '');

-- Roles that may use pglock are members of pglock_user; pglock_admin may also
-- force a lock's release.  Roles are global to the cluster, so they may already
-- exist from another database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'pglock_user') THEN
        CREATE ROLE pglock_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'pglock_admin') THEN
        CREATE ROLE pglock_admin NOLOGIN;
    END IF;
END
$$;
