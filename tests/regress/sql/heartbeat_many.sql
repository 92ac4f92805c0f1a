-- pglock_heartbeat_many: every lock of an owner renewed in one statement.  The
-- order in which names are renewed is secret (it follows the name locks'
-- keyed hash), so RVNs are shown compared with the locks, not as numbers.
\set SHOW_CONTEXT never

SELECT rvn AS m1 FROM pglock_acquire('many-1', 'w', '1 hour', 'one'::bytea) \gset
SELECT rvn AS m2 FROM pglock_acquire('many-2', 'w', '1 hour') \gset
SELECT rvn AS m3 FROM pglock_acquire('many-3', 'w', '1 hour') \gset

-- One row per name in the order given; each renewed lock has a new RVN, its
-- lease and data kept.
SELECT h.name, h.renewed, h.rvn = g.rvn AS rvn_is_the_locks, g.lease, encode(g.data, 'escape') AS data
  FROM pglock_heartbeat_many('w', ARRAY['many-3', 'many-1', 'many-2'], ARRAY[:m3, :m1, :m2])
       WITH ORDINALITY AS h(name, rvn, renewed, n)
  LEFT JOIN LATERAL pglock_get(h.name) AS g ON true
 ORDER BY h.n;
SELECT bool_and(rvn > greatest(:m1, :m2, :m3)) AS all_newer FROM pglock_locks WHERE name LIKE 'many-%';

-- A lease given replaces each renewed lock's lease.  Locks not held (an old
-- RVN, a missing lock, another owner's) come back unrenewed, untouched.
SELECT rvn AS m1 FROM pglock_get('many-1') \gset
SELECT rvn AS m2 FROM pglock_get('many-2') \gset
SELECT name, rvn IS NULL AS no_rvn, renewed
  FROM pglock_heartbeat_many('w', ARRAY['many-1', 'many-missing', 'many-2', 'many-3'],
                             ARRAY[:m1, 5, :m2, :m3], lease => '2 hours');
SELECT name, lease FROM pglock_locks WHERE name LIKE 'many-%' ORDER BY name;
SELECT name, rvn IS NULL AS no_rvn, renewed
  FROM pglock_heartbeat_many('someone-else', ARRAY['many-1'], ARRAY[(SELECT rvn FROM pglock_get('many-1'))]);
SELECT count(*) AS rows FROM pglock_heartbeat_many('w', '{}', '{}');

-- Bad arguments: each SQLSTATE, nothing renewed.
SELECT * FROM pglock_heartbeat_many(NULL, ARRAY['many-1'], ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('', ARRAY['many-1'], ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', NULL, ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1'], NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1', NULL], ARRAY[1, 2]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1', 'many-2'], ARRAY[1, NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1', 'many-2'], ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1', 'many-2', 'many-1'], ARRAY[1, 2, 3]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1', ''], ARRAY[1, 2]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY[repeat('n', 256)], ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1'], ARRAY[-1]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1'], ARRAY[1], lease => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pglock_heartbeat_many('w', ARRAY(SELECT 'n' || g FROM generate_series(1, 10001) g),
                                    ARRAY(SELECT g::bigint FROM generate_series(1, 10001) g));
\echo :LAST_ERROR_SQLSTATE
BEGIN READ ONLY;
SELECT * FROM pglock_heartbeat_many('w', ARRAY['many-1'], ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT name, lease FROM pglock_locks WHERE name LIKE 'many-%' ORDER BY name;

SELECT pglock_release_all('w');
