-- pglock: every client on one lock; a winner releases at once.
SELECT acquired::int AS acquired, rvn FROM pglock_acquire('hot', 'c' || :client_id) \gset
\if :acquired
SELECT pglock_release('hot', 'c' || :client_id, :rvn);
\endif
