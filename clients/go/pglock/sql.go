package pglock

import (
	"strconv"
	"strings"
	"time"
)

// The statements the client sends. Every one is a single statement in
// autocommit, so each is one atomic step in the server. They name pglock's
// functions without a schema: the extension must be on the connection's
// search_path (it is in public by default). Durations travel as microseconds
// (bigint) and come back the same way, so that no driver has to know
// PostgreSQL's interval type; arrays travel as array literals in text, so
// that no driver has to know PostgreSQL's arrays.

// acquireStatement takes the lock with fn (pglock_acquire or
// pglock_acquire_wait) and last, that function's last argument ($6).
//
//	$1 name, $2 owner, $3 lease (µs), $4 data stored whatever the lock has,
//	$5 replace_data, $6 observed_rvn or wait_timeout (µs),
//	$7 data stored only if the lock taken has none (WithData without ReplaceData).
//
// The second step keeps cirello.io/pglock's rule for WithData: the data
// creates the lock with it, but a lock that already has data (kept by a
// release with KeepOnRelease) keeps it unless ReplaceData is given. pglock's
// acquire stores any data given, so the client acquires without data and, in
// the same statement and transaction, stores $7 with a heartbeat when the lock
// it got has none. Nobody sees the lock between the two.
func acquireStatement(fn, last string) string {
	return `WITH a AS MATERIALIZED (
    SELECT * FROM ` + fn + `($1, $2, $3::bigint * interval '1 microsecond', $4::bytea, $5::boolean, ` + last + `)
), h AS MATERIALIZED (
    SELECT pglock_heartbeat($1, $2, a.rvn, $7::bytea) AS rvn
      FROM a
     WHERE a.acquired AND a.data IS NULL AND $7::bytea IS NOT NULL
)
SELECT a.acquired, coalesce(h.rvn, a.rvn), a.owner,
       (extract(epoch FROM a.lease) * 1000000)::bigint,
       CASE WHEN h.rvn IS NOT NULL THEN $7::bytea ELSE a.data END
  FROM a LEFT JOIN h ON true`
}

var (
	sqlAcquire     = acquireStatement("pglock_acquire", "$6::bigint")
	sqlAcquireWait = acquireStatement("pglock_acquire_wait", "$6::bigint * interval '1 microsecond'")
)

const (
	// $1 name, $2 owner, $3 rvn, $4 lease (µs).
	sqlHeartbeat = `SELECT pglock_heartbeat($1, $2, $3::bigint, NULL, false, $4::bigint * interval '1 microsecond')`

	// $1 owner, $2 names (text[] literal), $3 rvns (bigint[] literal), $4 lease (µs).
	// One row per name, in the order given.
	sqlHeartbeatMany = `SELECT rvn, renewed
  FROM pglock_heartbeat_many($1, $2::text[], $3::bigint[], $4::bigint * interval '1 microsecond')`

	// $1 name, $2 owner, $3 rvn, $4 keep.
	sqlRelease = `SELECT pglock_release($1, $2, $3::bigint, $4::boolean)`

	// $1 name, $2 owner, $3 rvn.
	sqlFence = `SELECT pglock_fence($1, $2, $3::bigint)`

	// $1 name.
	sqlGet = `SELECT owner, rvn, released, data FROM pglock_get($1)`

	// $1 the namespace's prefix. Data comes from pglock_get, which shows it
	// only for the caller's role's locks (the view shows none).
	sqlAllLocks = `SELECT v.name, v.owner, v.rvn, v.released,
       CASE WHEN v.data_bytes > 0 THEN (SELECT g.data FROM pglock_get(v.name) g) END
  FROM pglock_locks v
 WHERE starts_with(v.name, $1)
 ORDER BY v.name`

	// The caller's role's locks in a namespace ($1, a prefix), for DropTable;
	// $2, when not empty, keeps only that owner's.
	sqlOwnLocks = `SELECT v.name, v.owner, v.rvn, v.released
  FROM pglock_locks v
 WHERE starts_with(v.name, $1)
   AND ($2 = '' OR v.owner = $2)
   AND v.holder_role::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)`

	sqlExtensionVersion = `SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pglock'`
	sqlCreateExtension  = `CREATE EXTENSION IF NOT EXISTS pglock`
	sqlCanUse           = `SELECT current_user::text,
       pg_catalog.pg_has_role('pglock_user', 'USAGE'),
       pg_catalog.to_regprocedure('pglock_heartbeat_many(text,text[],bigint[],interval)') IS NOT NULL,
       (SELECT n.nspname::text FROM pg_catalog.pg_extension e
          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pglock')`
)

func micros(d time.Duration) int64 { return d.Microseconds() }

// textArray writes ss as a PostgreSQL array literal, every element quoted.
func textArray(ss []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			// '"' and '\\' are ASCII: no byte of a multi-byte UTF-8
			// character can be mistaken for them.
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// int64Array writes ns as a PostgreSQL array literal.
func int64Array(ns []int64) string {
	b := make([]byte, 0, 2+len(ns)*8)
	b = append(b, '{')
	for i, n := range ns {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, n, 10)
	}
	return string(append(b, '}'))
}
