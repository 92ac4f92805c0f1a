-- The floor: the least hand-written SQL with the same durable semantics (a row per
-- lock, an RVN from a sequence): one upsert that only takes a released lock, and
-- one UPDATE to release.
\set id random(1, 10000)
WITH taken AS (
    INSERT INTO floor_locks AS l (name, owner, rvn, released)
    VALUES ('lock-' || :id, 'c' || :client_id, nextval('floor_rvn'), false)
    ON CONFLICT (name) DO UPDATE
        SET owner = excluded.owner, rvn = nextval('floor_rvn'), released = false
        WHERE l.released
    RETURNING rvn)
SELECT coalesce((SELECT rvn FROM taken), 0) AS rvn \gset
\if :rvn
UPDATE floor_locks SET released = true WHERE name = 'lock-' || :id AND rvn = :rvn;
\endif
