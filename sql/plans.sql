-- Planner settings of the functions that run pglock's statements.
--
-- Every statement pglock runs looks a lock up by name.  On a small or freshly
-- vacuumed table the planner prefers a sequential scan, and a cached plan keeps
-- it while dead rows pile up; with seq scans off the primary key is always used.
ALTER FUNCTION pglock_acquire(text, text, interval, bytea, boolean, bigint) SET enable_seqscan = off;
ALTER FUNCTION pglock_heartbeat(text, text, bigint, bytea, boolean, interval) SET enable_seqscan = off;
ALTER FUNCTION pglock_release(text, text, bigint, boolean, bytea) SET enable_seqscan = off;
ALTER FUNCTION pglock_get(text) SET enable_seqscan = off;
ALTER FUNCTION pglock_acquire_wait(text, text, interval, bytea, boolean, interval) SET enable_seqscan = off;
ALTER FUNCTION pglock.acquire_wait_step(text, text, interval, bytea, boolean, interval, bigint, bigint, bigint, interval) SET enable_seqscan = off;
