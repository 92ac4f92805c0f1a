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

-- Another role cannot heartbeat or release app's locks, even knowing owner and RVN.
SET ROLE regress_other;
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

DROP OWNED BY regress_app, regress_other, regress_monitor, regress_nobody;
DROP ROLE regress_app, regress_other, regress_monitor, regress_nobody;
