-- pglock: acquire and release a random lock out of 10,000.
\set id random(1, 10000)
SELECT acquired::int AS acquired, rvn FROM pglock_acquire('lock-' || :id, 'c' || :client_id) \gset
\if :acquired
SELECT pglock_release('lock-' || :id, 'c' || :client_id, :rvn);
\endif
