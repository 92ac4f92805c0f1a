-- Baselines the benchmark compares pglock with, in the same database.

-- The client-side protocol's table and sequence, as cirello.io/pglock creates them.
CREATE TABLE locks (
    name varchar(255) PRIMARY KEY,
    record_version_number bigint,
    data bytea,
    owner varchar(255)
);
CREATE SEQUENCE locks_rvn;

-- The floor: hand-written SQL with the same durable semantics.
CREATE TABLE floor_locks (
    name text PRIMARY KEY,
    owner text NOT NULL,
    rvn bigint NOT NULL,
    released boolean NOT NULL
);
CREATE SEQUENCE floor_rvn;
