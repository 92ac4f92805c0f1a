-- What operators and roles see: the view, release_all, counters, privileges.
\set SHOW_CONTEXT never

CREATE ROLE regress_app LOGIN;
CREATE ROLE regress_other LOGIN;
CREATE ROLE regress_monitor LOGIN;
CREATE ROLE regress_nobody LOGIN;
GRANT pglock_user TO regress_app, regress_other;
GRANT pglock_monitor TO regress_monitor;

SET ROLE regress_app;
SELECT acquired, rvn FROM pglock_acquire('op-1', 'app-1', '1 hour', 'secret'::bytea);
SELECT acquired, rvn FROM pglock_acquire('op-2', 'app-1', '1 hour');
SELECT acquired, rvn FROM pglock_acquire('op-3', 'app-2', '1 hour');
RESET ROLE;

-- The view: every lock, its holder role, the size of its data (not the data).
SET ROLE regress_monitor;
SELECT name, owner, rvn, lease, released, holder_role, data_bytes
  FROM pglock_locks WHERE name LIKE 'op-%' ORDER BY name;
-- A monitor cannot take locks or read the table.
SELECT * FROM pglock_acquire('op-1', 'monitor');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock.locks;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Another role cannot heartbeat or release app's locks, even knowing owner and RVN,
-- nor take them over before their lease ran out by the server's clock, nor read
-- their data.
SET ROLE regress_other;
SELECT acquired, rvn, owner, data FROM pglock_acquire('op-1', 'other', observed_rvn => 14);
SELECT name, owner, rvn, data FROM pglock_get('op-1');
SELECT pglock_heartbeat('op-1', 'app-1', 14);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release('op-1', 'app-1', 14);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_release_all('app-1');
UPDATE pglock.locks SET owner = 'mine';
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_stats();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A role outside pglock_user cannot call pglock at all.
SET ROLE regress_nobody;
SELECT * FROM pglock_get('op-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_locks;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- release_all: every lock of one owner held by the calling role.
SET ROLE regress_app;
SELECT pglock_release_all('app-1');
SELECT pglock_release_all('app-1');
SELECT pglock_release_all('app-2', keep => true);
SELECT pglock_release_all(NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT name, owner, released FROM pglock_locks WHERE name LIKE 'op-%' ORDER BY name;

-- pglock_force_release: for pglock_admin (and superusers) only.
CREATE ROLE regress_admin LOGIN;
GRANT pglock_admin TO regress_admin;
SET ROLE regress_app;
SELECT acquired FROM pglock_acquire('op-stuck', 'app-1', '1 hour');
SELECT pglock_force_release('op-stuck');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_admin;
SELECT pglock_force_release('op-stuck');
SELECT pglock_force_release('op-stuck');
SELECT pglock_force_release(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pglock_force_release('');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pglock_locks WHERE name = 'op-stuck';
SELECT force_released >= 1 AS counted FROM pglock_stats();
RESET ROLE;

DROP OWNED BY regress_app, regress_other, regress_monitor, regress_nobody, regress_admin;
DROP ROLE regress_app, regress_other, regress_monitor, regress_nobody, regress_admin;
