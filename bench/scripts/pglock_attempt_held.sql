-- pglock: a failed attempt on a lock another owner holds.
SELECT acquired FROM pglock_acquire('held', 'c' || :client_id);
