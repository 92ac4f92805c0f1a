-- The SQL interface as \df shows it: names, arguments, defaults, results.
\df pglock*
\df pglock.*
\dv pglock_locks
\d pglock_locks
SELECT extversion FROM pg_extension WHERE extname = 'pglock';
