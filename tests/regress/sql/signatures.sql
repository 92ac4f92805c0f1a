-- The SQL interface as \df shows it: names, arguments, defaults, results.
\df pglock*
\df pglock.*
-- The rows that pglock_acquire, pglock_acquire_wait and pglock_get return.
\d pglock_acquire_result
\d pglock_get_result
\dv pglock_locks
\d pglock_locks
SELECT extversion FROM pg_extension WHERE extname = 'pglock';
