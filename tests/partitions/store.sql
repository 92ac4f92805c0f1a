-- The fenced store of the fault tests: what the workers do under their locks
-- lands here, each write carrying the lock's RVN as its fencing token. A write
-- is accepted only if its token is at least the largest token the store has
-- accepted for that resource (Kleppmann's fencing): a holder that lost its lock
-- cannot overwrite its successor's work once the successor has written. The
-- checker reads fenced_writes (in the order they were accepted, id) after the run.

CREATE TABLE fenced_tokens (
    resource text PRIMARY KEY,
    token    bigint NOT NULL
);

CREATE TABLE fenced_writes (
    id       bigserial PRIMARY KEY,
    resource text   NOT NULL,
    token    bigint NOT NULL,
    writer   text   NOT NULL,
    seq      bigint NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (writer, seq)
);

-- fenced_write(resource, token, writer, seq): true if accepted. The row of
-- fenced_tokens is locked by the upsert until commit, so writes to one
-- resource are accepted one at a time, and their ids (drawn after the lock)
-- are in the order they were accepted.
CREATE FUNCTION fenced_write(p_resource text, p_token bigint, p_writer text, p_seq bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fenced_tokens AS t (resource, token) VALUES (p_resource, p_token)
    ON CONFLICT (resource) DO UPDATE SET token = excluded.token
        WHERE t.token <= excluded.token;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO fenced_writes (resource, token, writer, seq)
    VALUES (p_resource, p_token, p_writer, p_seq);
    RETURN true;
END $$;
