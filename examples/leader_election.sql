-- Leader election among application instances, each a long-running pg_cron job
-- (or any client) calling  CALL leader_loop('instance-a', run_for => '1 hour');
--
-- One instance at a time holds the lock 'leader'.  The leader heartbeats once a
-- round and does the round's work in the same transaction as its heartbeat, so
-- the work commits only while the lease is still its own.  The others wait in
-- pglock_acquire_wait_committing: a released lock is taken at once, a silent
-- leader's lock after its lease.  Every work row carries the leader's RVN, a
-- fencing token that only grows.

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
    my_rvn  bigint;
BEGIN
    WHILE pg_catalog.clock_timestamp() < stop_at LOOP
        IF NOT is_leader THEN
            -- Follower: wait (committing every second, holding nothing) until
            -- the leader releases or goes silent for its lease.
            CALL pglock_acquire_wait_committing('leader', instance, lease,
                 wait_timeout => greatest(stop_at - pg_catalog.clock_timestamp(), '0'),
                 acquired => is_leader, rvn => my_rvn);
            CONTINUE WHEN NOT is_leader;
        ELSE
            BEGIN
                my_rvn := pglock_heartbeat('leader', instance, my_rvn);
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                -- 55000: our lease ran out and another instance took over.
                RAISE NOTICE '% lost the leadership: %', instance, SQLERRM;
                is_leader := false;
                CONTINUE;
            END;
        END IF;

        -- The leader's work for this round, committed with the heartbeat.
        INSERT INTO leader_work_log (instance, fencing_rvn) VALUES (instance, my_rvn);
        COMMIT;
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', round));
    END LOOP;

    IF is_leader THEN
        PERFORM pglock_release('leader', instance, my_rvn);
    END IF;
END
$$;
