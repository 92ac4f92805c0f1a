-- Bloat: heartbeat one of 1,000 locks; client c owns the locks whose number is
-- c modulo the client count, so no two clients touch one lock.
\set k random(0, 1000 / :clients - 1)
\set n :client_id + :clients * :k
SELECT rvn FROM pglock_get('bloat-' || :n) \gset
SELECT pglock_heartbeat('bloat-' || :n, 'bloat', :rvn);
