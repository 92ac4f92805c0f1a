-- One cycle of a traffic client of tests/high_availability/patroni.sh: take a lock (waiting, so
-- a lock left behind by a failover is taken over after its lease), renew it,
-- release it keeping its row. Each write is recorded in ha_ledger by the same
-- statement, so the two commit together; each acknowledged write then prints
--   ACK client cycle op name rvn at_ms port
-- (at_ms: the server's clock in ms; port: the server's, which tells the node).
-- Variables: client, cycle (numbers), name, owner.

WITH a AS (SELECT acquired, rvn
             FROM pglock_acquire_wait(:'name', :'owner', '3 seconds',
                                      wait_timeout => '4 seconds')),
     w AS (INSERT INTO ha_ledger (client, cycle, op, name, rvn)
           SELECT :client, :cycle, 'acquire', :'name', rvn FROM a WHERE acquired)
SELECT acquired::int AS acquired, rvn,
       (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS at_ms,
       inet_server_port() AS port
  FROM a
\gset
\if :acquired
\echo ACK :client :cycle acquire :name :rvn :at_ms :port
WITH h AS (SELECT pglock_heartbeat(:'name', :'owner', :rvn) AS rvn),
     w AS (INSERT INTO ha_ledger (client, cycle, op, name, rvn)
           SELECT :client, :cycle, 'heartbeat', :'name', rvn FROM h)
SELECT rvn, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS at_ms
  FROM h
\gset
\echo ACK :client :cycle heartbeat :name :rvn :at_ms :port
WITH r AS (SELECT pglock_release(:'name', :'owner', :rvn, keep => true) AS released),
     w AS (INSERT INTO ha_ledger (client, cycle, op, name, rvn)
           SELECT :client, :cycle, 'release', :'name', :rvn FROM r WHERE released)
SELECT released::int AS released,
       (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS at_ms
  FROM r
\gset
\if :released
\echo ACK :client :cycle release :name :rvn :at_ms :port
\endif
\endif
