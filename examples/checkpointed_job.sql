-- A batch job in PL/pgSQL that holds a lock while it works, heartbeats between
-- steps, and keeps its progress in the lock's data so that the next run (on this
-- worker or another) resumes where it stopped:
--
--   CALL nightly_export('worker-1');
--
-- Each step prepares what it will write (holding nothing), then, in one
-- transaction, fences the lock, writes, and heartbeats with the step's
-- checkpoint.  If the lease ran out and another worker took over meanwhile, the
-- fence raises (55000) before the step writes anything, and the procedure stops
-- with the error; once fenced, no other worker's takeover commits before the
-- step does, however long its writes take.  The new holder resumes from the
-- last checkpoint, so no step is done twice or lost.

CREATE TABLE export_log (
    step   integer PRIMARY KEY,
    worker text    NOT NULL
);

CREATE PROCEDURE nightly_export(
    worker    text,
    steps     integer  DEFAULT 10,
    lease     interval DEFAULT '5 seconds',
    step_time interval DEFAULT '0')   -- stands in for preparing each step
LANGUAGE plpgsql
AS $$
DECLARE
    got    boolean;
    my_rvn bigint;
    done   integer;
BEGIN
    -- Wait up to three leases: enough to take over from a worker that died
    -- holding the lock (one lease) on a busy machine, not so long that runs pile up.
    CALL pglock_acquire_wait_committing('nightly-export', worker, lease,
         wait_timeout => lease * 3, acquired => got, rvn => my_rvn);
    IF NOT got THEN
        RAISE NOTICE 'nightly-export: another worker holds the lock';
        RETURN;
    END IF;

    -- The checkpoint: the last step done, kept in the lock's data.
    SELECT coalesce(pg_catalog.convert_from(data, 'UTF8')::integer, 0)
      INTO done FROM pglock_get('nightly-export');

    FOR step IN done + 1 .. steps LOOP
        -- Prepare the step: read the source, call out; nothing written yet.
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', step_time));
        -- Raises 55000 if the lock was lost: the job stops, this step unwritten.
        PERFORM pglock_fence('nightly-export', worker, my_rvn);
        INSERT INTO export_log (step, worker) VALUES (step, worker);   -- the work
        -- Renew, with the checkpoint, in the step's transaction.
        my_rvn := pglock_heartbeat('nightly-export', worker, my_rvn,
                                   data => pg_catalog.convert_to(step::text, 'UTF8'));
        COMMIT;
    END LOOP;

    -- Finished: release, keeping a checkpoint that says so.
    PERFORM pglock_release('nightly-export', worker, my_rvn, keep => true,
                           data => pg_catalog.convert_to(steps::text, 'UTF8'));
END
$$;
