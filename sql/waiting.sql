-- pglock_acquire_wait_committing: the waiting acquire for long waits.
--
-- pglock_acquire_wait waits inside one statement, and a statement's snapshot
-- keeps VACUUM from removing any row version that died after it started, in
-- every table of the database.  A standby instance waiting hours to become
-- leader must not do that, so this procedure waits in steps of at most a second
-- and COMMITs between them: its snapshot is never more than a second old, and
-- between steps it holds nothing at all.  What a step saw of the holder (its RVN,
-- since when on the backend's monotonic clock, its lease) is carried to the next.
--
-- SECURITY INVOKER and without SET clauses, because a procedure with either may
-- not COMMIT; it only calls pglock's own step function, schema-qualified, which
-- refuses to start (2D000, with a pglock message) where the procedure could not
-- commit: inside a transaction block or a function.
CREATE PROCEDURE pglock_acquire_wait_committing(
    name text,
    owner text,
    lease interval DEFAULT '20 seconds',
    data bytea DEFAULT NULL,
    replace_data boolean DEFAULT false,
    wait_timeout interval DEFAULT NULL,
    INOUT acquired boolean DEFAULT NULL,
    INOUT rvn bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $procedure$
DECLARE
    -- Readings of the backend's monotonic clock, from the step function: what
    -- one step saw of the holder, for the next.
    started       bigint;
    watched_rvn   bigint;
    watched_since bigint;
    watched_lease interval;
    step          record;
BEGIN
    LOOP
        SELECT s.acquired, s.rvn, s.lease, s.timed_out, s.started, s.watched_since
          INTO step
          FROM pglock.acquire_wait_step(
                   name, owner, lease, data, replace_data, wait_timeout,
                   started, watched_rvn, watched_since, watched_lease) AS s;
        IF step.acquired OR step.timed_out THEN
            acquired := step.acquired;
            rvn := step.rvn;
            -- Commit the takeover too: others see the new holder at once, and the
            -- per-name lock is not held through the caller's next statements.
            COMMIT;
            RETURN;
        END IF;
        started := step.started;
        watched_rvn := step.rvn;
        watched_since := step.watched_since;
        watched_lease := step.lease;
        COMMIT;
    END LOOP;
END
$procedure$;
