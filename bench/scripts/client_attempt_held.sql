-- The client-side protocol's failed attempt on a held lock: it draws an RVN and
-- its upsert rewrites the row with the holder's values.  A constant owner, as in
-- pglock_attempt_held.sql.
SELECT nextval('locks_rvn') AS new_rvn \gset
INSERT INTO locks AS l (name, record_version_number, data, owner)
VALUES ('held', :new_rvn, NULL, 'contender')
ON CONFLICT (name) DO UPDATE SET
    record_version_number = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                                 THEN excluded.record_version_number ELSE l.record_version_number END,
    data = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                THEN COALESCE(excluded.data, l.data) ELSE l.data END,
    owner = CASE WHEN COALESCE(l.record_version_number = 0, TRUE)
                 THEN excluded.owner ELSE l.owner END
RETURNING (record_version_number = :new_rvn)::int AS acquired;
