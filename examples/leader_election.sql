-- Leader election among application instances, each a long-running pg_cron job
-- (or any client) calling  CALL leader_loop('instance-a', run_for => '1 hour');
--
-- One instance at a time holds the lock 'leader'.  Each round the leader does
-- its work in a transaction that first heartbeats (a write, so it holds the
-- lock's name until COMMIT) or, in the round right after it was elected (the
-- procedure below committed the acquisition on its own), fences the lock with
-- pglock_fence: either way the round's work commits only while the lock is the
-- leader's, and no other instance's takeover commits before it.  The others
-- wait in pglock_acquire_wait_committing: a released lock is taken at once, a
-- silent leader's lock after its lease.  Every work row carries the leader's
-- RVN, a fencing token that only grows.

CREATE TABLE leader_work_log (
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    instance    text        NOT NULL,
    backend_pid integer     NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    fencing_rvn bigint      NOT NULL
);

CREATE PROCEDURE leader_loop(
    instance text,
    run_for  interval,
    lease    interval DEFAULT '2 seconds')
LANGUAGE plpgsql
AS $$
DECLARE
    stop_at timestamptz := pg_catalog.clock_timestamp() + run_for;
    round   interval := lease / 4;   -- heartbeat well inside the lease
    is_leader boolean := false;
    elected boolean;                 -- this round is the first since the election
    my_rvn  bigint;
BEGIN
    WHILE pg_catalog.clock_timestamp() < stop_at LOOP
        elected := NOT is_leader;
        IF NOT is_leader THEN
            -- Follower: wait (committing every second, holding nothing) until
            -- the leader releases or goes silent for its lease.
            CALL pglock_acquire_wait_committing('leader', instance, lease,
                 wait_timeout => greatest(stop_at - pg_catalog.clock_timestamp(), '0'),
                 acquired => is_leader, rvn => my_rvn);
            CONTINUE WHEN NOT is_leader;
        END IF;
        BEGIN
            IF elected THEN
                -- The lease is fresh: fence this round's work with the
                -- acquisition's RVN, writing nothing.
                PERFORM pglock_fence('leader', instance, my_rvn);
            ELSE
                my_rvn := pglock_heartbeat('leader', instance, my_rvn);
            END IF;
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            -- 55000: our lease ran out and another instance took over.
            RAISE NOTICE '% lost the leadership: %', instance, SQLERRM;
            is_leader := false;
            CONTINUE;
        END;

        -- The leader's work for this round, committed with the heartbeat or fence.
        INSERT INTO leader_work_log (instance, fencing_rvn) VALUES (instance, my_rvn);
        COMMIT;
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', round));
    END LOOP;

    IF is_leader THEN
        PERFORM pglock_release('leader', instance, my_rvn);
    END IF;
END
$$;
