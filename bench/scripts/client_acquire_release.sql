-- The client-side protocol (cirello.io/pglock) on a random lock out of 10,000:
-- draw an RVN, upsert claiming the lock if the RVN seen (none: 0) still stands or
-- the lock is free, then release by deleting.
\set id random(1, 10000)
SELECT nextval('locks_rvn') AS new_rvn \gset
INSERT INTO locks AS l (name, record_version_number, data, owner)
VALUES ('lock-' || :id, :new_rvn, NULL, 'c' || :client_id)
ON CONFLICT (name) DO UPDATE SET
    record_version_number = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                                 THEN excluded.record_version_number ELSE l.record_version_number END,
    data = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                THEN COALESCE(excluded.data, l.data) ELSE l.data END,
    owner = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                 THEN excluded.owner ELSE l.owner END
RETURNING (record_version_number = :new_rvn)::int AS acquired \gset
\if :acquired
DELETE FROM locks WHERE name = 'lock-' || :id AND record_version_number = :new_rvn;
\endif
