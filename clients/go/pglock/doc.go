// Package pglock is a drop-in for cirello.io/pglock (v1.16) backed by the
// pglock PostgreSQL extension: distributed locks that are leases named by any
// string, with an owner label, optional data and a record version number (RVN)
// that changes with every write and only grows, so that it is a fencing token.
// The protocol's rules live in the server; this package times heartbeats and
// reports lost locks. It uses database/sql only: open the *sql.DB with
// github.com/lib/pq ("postgres") or github.com/jackc/pgx/v5/stdlib ("pgx").
//
// Moving from cirello.io/pglock is a change of import path, from
// "cirello.io/pglock" to "github.com/pglock/pglock/clients/go/pglock", and
// CREATE EXTENSION pglock in the database (GRANT pglock_user TO the
// application's role); docs/migrating-from-cirello.md in the repository has
// the whole story.
//
// Basic usage:
//
//	db, err := sql.Open("postgres", dsn) // or "pgx"
//	if err != nil {
//		log.Fatal("cannot connect to the database:", err)
//	}
//	c, err := pglock.New(db,
//		pglock.WithLeaseDuration(10*time.Second),
//		pglock.WithHeartbeatFrequency(2*time.Second))
//	if err != nil {
//		log.Fatal("cannot create lock client:", err)
//	}
//	if err := c.TryCreateTable(); err != nil { // checks the extension
//		log.Fatal(err)
//	}
//	err = c.Do(ctx, "nightly-report", func(ctx context.Context, l *pglock.Lock) error {
//		// ctx is canceled if the lock is lost: stop then.
//		return report(ctx, l.RecordVersionNumber())
//	})
//
// # What the original's table becomes
//
// cirello.io/pglock keeps locks in a table of its own, read and written with
// SQL the client sends. Here every lock lives in the extension's table, which
// no role can touch but through pglock's functions, and each method is one
// call of such a function in autocommit:
//
//   - Acquire, AcquireContext: pglock_acquire_wait, which waits in the server
//     and sees a release at once (the original polls once a lease); with
//     FailIfLocked, or to take over a holder seen standing still,
//     pglock_acquire with the RVN seen (observed_rvn).
//   - the heartbeats: one pglock_heartbeat_many per period for all the
//     locks the client holds; SendHeartbeat: pglock_heartbeat.
//   - Release, ReleaseContext, Lock.Close: pglock_release (keep => true with
//     KeepOnRelease).
//   - Get, GetData: pglock_get, which locks nothing (the original reads
//     with SELECT ... FOR UPDATE).
//   - GetAllLocks: the view pglock_locks, with each lock's data from
//     pglock_get.
//   - Lock.Fence (new): pglock_fence in the caller's *sql.Tx.
//   - CreateTable, TryCreateTable: check that the extension is installed,
//     recent enough (0.3.0), on the search_path and usable by the role
//     (pglock_user); they run CREATE EXTENSION pglock when it is missing,
//     which works for a superuser. No table is made, and neither fails
//     because "the table" exists.
//   - WithCustomTable(t): a name space. The client's lock "x" is the lock
//     "t/x" in pglock, so clients with different tables never share a lock,
//     as with separate tables. The default table ("locks", DefaultTableName)
//     is pglock's own name space: names are used as they are, and a lock "x"
//     is the same lock for this package, the Rust and Python clients, and
//     SQL.
//   - DropTable: releases (deletes) the locks of the client's name space
//     that the connecting role holds or kept, whatever their owner labels;
//     in pglock's own name space only those of the client's owner label.
//     Other roles' locks are never touched: pglock does not let one role
//     write another's locks. It fails when the extension is missing (the
//     original fails when the table is missing).
//
// Names and owner labels are at most 255 characters (with the name space's
// prefix, for names), data at most 1 MiB. A lock's data is visible only to
// its holder's role: Get, GetData and GetAllLocks show nil for other roles'
// locks. Within a role, owners cooperate as in the original: any of them may
// take over a silent holder. Give applications that must not do that to each
// other roles of their own.
//
// # Acquiring
//
// A caller that finds the lock held waits the holder's lease and takes the
// lock over if the holder's RVN stood still meanwhile (the holder stopped
// renewing it). The server does the waiting (pglock_acquire_wait), in calls
// of at most 10 s; a context that ends cancels the call in the server (both
// drivers send PostgreSQL a cancel request), and a call never outlives its
// context's deadline. With pglock 0.4.0 the server serves waiters in arrival
// order; a wait longer than one call joins the queue again. The client
// remembers the RVN it saw between calls, so a wait longer than one call, and
// a FailIfLocked caller that tries again after the holder's lease, take a
// dead holder's lock over (the original's FailIfLocked never can). From
// pglock 0.4.0 the server itself watches leases, so even a first try takes
// over a holder it saw stand still for its lease.
//
// A role whose statement_timeout is shorter than a call waits in shorter
// calls. A role whose transactions default to REPEATABLE READ or SERIALIZABLE,
// where pglock refuses to wait (25000: the snapshot would never show the
// release), waits in READ COMMITTED transactions of the client's own.
//
// A context that ends just as the server acquires the lock can leave the lock
// acquired for nobody: the reply is lost with the canceled call. Nobody renews
// it, so it is free again one lease later, like a crashed holder's.
//
// Each waiting call holds a connection of the pool for its length. The
// clients on one *sql.DB let at most three quarters of its MaxOpenConns (at
// least one) wait in the server at once, the others queueing in the client in
// arrival order, so that releases and heartbeats find a connection; with no
// MaxOpenConns set, every waiter takes a connection, and the server's
// max_connections is the bound. Bound the pool.
//
// # Heartbeats and lost locks
//
// A client with a heartbeat period (WithHeartbeatFrequency; 5 s by default,
// at most half the lease) renews every lock it holds from one goroutine, with
// one pglock_heartbeat_many call per period for all the locks due, on a
// connection of the pool. A lock is due one period after the request that
// acquired or last renewed it was sent; a call also takes the locks due
// within the next half period, so that locks acquired at different times fall
// into step. The goroutine runs while the client holds a lock with
// heartbeats, and stops with the last one. A lock's heartbeats stop when it
// is released or lost, or when its heartbeat context is done: the context
// given to AcquireContext or Do, or the one of WithCustomHeartbeatContext. A
// lock whose heartbeats stopped that way stays held, unrenewed, until its
// lease runs out.
//
// The rule for when a lock is lost is the one every pglock client shares.
// Let renewed be the instant just before the request of the last successful
// acquire or renewal of the lock was sent, lease the client's lease and
// period its heartbeat period:
//
//   - Safe until renewed + lease: the server wrote the RVN after renewed, and
//     a rival must watch that RVN stand still for a whole lease after seeing
//     it, so no one takes the lock over before renewed + lease.
//   - Lost at renewed + lease - margin, margin = min(period, lease/4), if no
//     renewal has succeeded by then. The margin is the time the work has to
//     stop before a rival may take over.
//   - Lost at once when pglock_heartbeat_many answers renewed = false for it
//     (taken over, released by an operator, or removed by DropTable), or when
//     SendHeartbeat or Lock.Fence find it not held (SQLSTATE 55000 or 42501).
//   - Anything else is transient (a broken connection, a server restarting,
//     a timeout): the renewal is retried after min(0.5 s, period), over
//     whatever connection the pool gives, for as long as the deadline allows.
//     A call is abandoned, and canceled in the server, after a period (at
//     least a quarter of the lease) or at the latest deadline of its locks; a
//     lock whose own deadline comes first is lost at it meanwhile. A call
//     abandoned too late may still have renewed its locks, with RVNs the
//     client never learns: the next call finds them not renewed, and they are
//     lost, the safe reading. A server that is back within the deadline gets
//     the next retry, and the lock is kept (cirello.io/pglock #18, #40).
//
// A lost lock is marked released (IsReleased), its heartbeat context is
// canceled, and so is the context Do gave its function. A lock acquired at
// the end of a wait counts as renewed when the wait was sent (the write came
// later, but when is unknown); after a wait of more than an eighth of the
// lease, the client renews the lock before it returns it, so that its lease
// counts from then.
//
// Without heartbeats (a period of 0) nothing renews a lock and nothing
// reports it lost: it is safe for one lease after it was acquired, and
// SendHeartbeat renews it.
//
// Locks a client renews share its owner label and one statement: a
// transaction that fences one of them (Lock.Fence) holds off the renewal of
// all of them until it ends. Keep fenced transactions well under a period.
//
// # Fencing
//
// The RVN of a held lock (Lock.RecordVersionNumber) only grows, across
// holders too, so a store that keeps the largest RVN it saw can reject the
// writes of a holder that paused past its lease. For writes to the same
// database, Lock.Fence makes that a guarantee: in the transaction of the
// writes, it fails unless the client holds the lock, and no takeover commits
// before the transaction does.
//
//	tx, err := db.BeginTx(ctx, nil)
//	...
//	token, err := l.Fence(ctx, tx) // errors.Is(err, pglock.ErrLockAlreadyReleased): lost
//	...
//	_, err = tx.ExecContext(ctx, `UPDATE reports SET done = true, token = $1 WHERE ...`, token)
//	...
//	err = tx.Commit()
package pglock
