-- The client-side protocol's heartbeat: draw an RVN, then move the lock to it if
-- it still has the old one (the first call takes the lock).
SELECT nextval('locks_rvn') AS new_rvn \gset
\if :rvn = 0
INSERT INTO locks (name, record_version_number, owner)
VALUES ('hb-' || :client_id, :new_rvn, 'c' || :client_id)
ON CONFLICT (name) DO UPDATE SET record_version_number = excluded.record_version_number
RETURNING record_version_number AS rvn \gset
\else
UPDATE locks SET record_version_number = :new_rvn
 WHERE name = 'hb-' || :client_id AND record_version_number = :rvn
RETURNING record_version_number AS rvn \gset
\endif
