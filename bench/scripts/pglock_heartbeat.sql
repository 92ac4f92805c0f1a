-- pglock: each client heartbeats its own lock (the first call acquires it).
\if :rvn = 0
SELECT rvn FROM pglock_acquire('hb-' || :client_id, 'c' || :client_id, '1 hour') \gset
\else
SELECT pglock_heartbeat('hb-' || :client_id, 'c' || :client_id, :rvn) AS rvn \gset
\endif
