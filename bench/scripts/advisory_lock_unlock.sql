-- Advisory locks on a random key out of 10,000: in memory, lost on restart.
\set id random(1, 10000)
SELECT pg_try_advisory_lock(:id)::int AS got \gset
\if :got
SELECT pg_advisory_unlock(:id);
\endif
