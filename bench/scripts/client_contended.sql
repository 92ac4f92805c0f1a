-- The client-side protocol with every client on one lock; a winner releases.
SELECT nextval('locks_rvn') AS new_rvn \gset
INSERT INTO locks AS l (name, record_version_number, data, owner)
VALUES ('hot', :new_rvn, NULL, 'c' || :client_id)
ON CONFLICT (name) DO UPDATE SET
    record_version_number = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                                 THEN excluded.record_version_number ELSE l.record_version_number END,
    data = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                THEN COALESCE(excluded.data, l.data) ELSE l.data END,
    owner = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                 THEN excluded.owner ELSE l.owner END
RETURNING (record_version_number = :new_rvn)::int AS acquired \gset
\if :acquired
DELETE FROM locks WHERE name = 'hot' AND record_version_number = :new_rvn;
\endif
