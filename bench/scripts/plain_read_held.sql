-- Reference: a plain read of the held lock's row.
SELECT record_version_number, owner, data FROM locks WHERE name = 'held';
