package pglock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// DefaultTableName is the "table" of a client made without WithCustomTable.
// It stands for pglock's own name space: lock names are used as they are, so
// a lock "x" of this client is the lock "x" of every other pglock client and
// of SQL.
const DefaultTableName = "locks"

// DefaultLeaseDuration is the lease of a client made without
// WithLeaseDuration: how long a lock stays valid after its last write before
// another client may take it over.
const DefaultLeaseDuration = 20 * time.Second

// DefaultHeartbeatFrequency is the heartbeat period of a client made without
// WithHeartbeatFrequency: how often the locks it holds are renewed.
const DefaultHeartbeatFrequency = 5 * time.Second

const (
	maxLease = 24 * time.Hour
	// maxNameChars is pglock's limit for names and owners, in characters.
	maxNameChars = 255
	// minPeriod is the shortest heartbeat period the renewer keeps: a
	// period given shorter (the original's tests use one nanosecond) is
	// renewed this often.
	minPeriod = 10 * time.Millisecond
	// maxRetryInterval bounds the wait before retrying a failed renewal.
	maxRetryInterval = 500 * time.Millisecond
	// waitChunk bounds one pglock_acquire_wait call: a wait longer than
	// that is several calls. It bounds how long a wait outlives a client
	// whose cancel never reached the server; a call that ends loses its
	// place in the server's queue of waiters (pglock 0.4.0).
	waitChunk = 10 * time.Second
	// maxRetries bounds the retries of a call that failed with 40001 or
	// 40P01 (pglock's calls in autocommit do not raise them; a
	// REPEATABLE READ default of the role could).
	maxRetries = 10
	// maxObservations bounds the client's memory of holders' RVNs.
	maxObservations = 4096
	// maxBatch is pglock_heartbeat_many's limit of names per call.
	maxBatch = 10000
)

// Client is a lock client on a *sql.DB whose server has the pglock extension.
// Make sure it talks to the primary, not a standby (pglock's writes fail with
// 25006 on a standby). A Client is safe for concurrent use.
type Client struct {
	db                 *sql.DB
	tableName          string
	namespace          string // prefix of the client's lock names in pglock
	leaseDuration      time.Duration
	heartbeatFrequency time.Duration
	log                LevelLogger
	owner              string

	waiters *gate // waiting acquires in the server, bounded below the pool's size

	seenMu sync.Mutex
	seen   map[string]observation // pglock name -> holder RVN seen

	renewer renewer

	// waitInTx: waits run in READ COMMITTED transactions (the role's
	// default isolation is higher).
	waitInTx atomic.Bool
}

// observation is a holder's RVN as first seen by the client, for the
// takeover of a holder whose RVN stood still for its lease.
type observation struct {
	rvn    int64
	lease  time.Duration
	seenAt time.Time // when the reply showing rvn arrived (monotonic)
	// notBefore delays the next takeover attempt after one was refused
	// with rvn still standing (another role's lease has not run out by the
	// server's clock yet).
	notBefore time.Time
}

// takeoverAt is when a takeover of the holder at rvn may be tried.
func (o observation) takeoverAt() time.Time {
	t := o.seenAt.Add(o.lease)
	if o.notBefore.After(t) {
		return o.notBefore
	}
	return t
}

// New returns a lock client on db, which must hold a PostgreSQL driver:
// github.com/lib/pq or the database/sql driver of github.com/jackc/pgx
// (stdlib). Use UnsafeNew for any other driver (or a wrapper of these).
// New does not connect; CreateTable checks the server.
func New(db *sql.DB, opts ...ClientOption) (*Client, error) {
	if db == nil || !isPostgreSQLDriver(db) {
		return nil, ErrNotPostgreSQLDriver
	}
	return newClient(db, opts...)
}

// UnsafeNew returns a lock client on db without checking its driver.
func UnsafeNew(db *sql.DB, opts ...ClientOption) (*Client, error) {
	if db == nil {
		return nil, ErrNotPostgreSQLDriver
	}
	return newClient(db, opts...)
}

func isPostgreSQLDriver(db *sql.DB) bool {
	t := reflect.TypeOf(db.Driver())
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return false
	}
	pkg := t.PkgPath()
	return pkg == "github.com/lib/pq" ||
		(strings.HasPrefix(pkg, "github.com/jackc/pgx") && strings.HasSuffix(pkg, "/stdlib"))
}

func newClient(db *sql.DB, opts ...ClientOption) (*Client, error) {
	c := &Client{
		db:                 db,
		tableName:          DefaultTableName,
		leaseDuration:      DefaultLeaseDuration,
		heartbeatFrequency: DefaultHeartbeatFrequency,
		log:                discardLogger{},
		owner:              fmt.Sprintf("pglock-%v", rand.Int()),
		seen:               make(map[string]observation),
	}
	for _, opt := range opts {
		opt(c)
	}
	switch {
	case c.leaseDuration <= 0,
		c.heartbeatFrequency > 0 && c.leaseDuration < 2*c.heartbeatFrequency:
		return nil, ErrDurationTooSmall
	case c.leaseDuration > maxLease:
		return nil, ErrDurationTooLarge
	case c.owner == "", utf8.RuneCountInString(c.owner) > maxNameChars:
		return nil, ErrInvalidOwner
	}
	if c.tableName != DefaultTableName && c.tableName != "" {
		c.namespace = c.tableName + "/"
	}
	c.waiters = gateFor(db)
	c.renewer.c = c
	return c, nil
}

// period is the heartbeat period the renewer keeps.
func (c *Client) period() time.Duration {
	if c.heartbeatFrequency <= 0 {
		// No heartbeats: margin = min(period, lease/4) is lease/4.
		return c.leaseDuration
	}
	return min(max(c.heartbeatFrequency, minPeriod), c.leaseDuration/2)
}

func (c *Client) retryInterval() time.Duration {
	return min(maxRetryInterval, c.period())
}

// ClientOption reconfigures the lock client.
type ClientOption func(*Client)

// WithLogger injects a logger into the client, so its internals can be
// recorded.
//
// Deprecated: Use WithLevelLogger instead.
func WithLogger(l Logger) ClientOption {
	return func(c *Client) { c.log = printlnLogger{l} }
}

// WithLevelLogger injects a logger into the client, so its internals can be
// recorded.
func WithLevelLogger(l LevelLogger) ClientOption {
	return func(c *Client) { c.log = l }
}

// WithLeaseDuration sets the lease of the client's locks: how long a lock
// stays valid after its last write before another client may take it over.
// At most 24 hours.
func WithLeaseDuration(d time.Duration) ClientOption {
	return func(c *Client) { c.leaseDuration = d }
}

// WithHeartbeatFrequency sets the heartbeat period: how often the client
// renews the locks it holds (0 or less: never; renew with SendHeartbeat).
// It must be at most half the lease; a quarter or less leaves retries room.
func WithHeartbeatFrequency(d time.Duration) ClientOption {
	return func(c *Client) { c.heartbeatFrequency = d }
}

// WithCustomTable gives the client a name space of its own: its locks are
// named "<tableName>/<name>" in pglock, so clients with different table names
// never share a lock, and GetAllLocks and DropTable see only the locks of the
// name space. No table is created; DefaultTableName (or "") is pglock's own
// name space, where lock names are used as they are.
func WithCustomTable(tableName string) ClientOption {
	return func(c *Client) { c.tableName = tableName }
}

// WithOwner sets the owner label of the client's locks (1 to 255
// characters; by default "pglock-" and a random number). Give each process
// its own.
func WithOwner(owner string) ClientOption {
	return func(c *Client) { c.owner = owner }
}

func (c *Client) newLock(ctx context.Context, name string, opts []LockOption) *Lock {
	l := &Lock{
		client:        c,
		name:          name,
		full:          c.namespace + name,
		leaseDuration: c.leaseDuration,
		owner:         c.owner,
	}
	l.heartbeatContext, l.heartbeatCancel = context.WithCancel(ctx)
	for _, opt := range opts {
		opt(l)
	}
	return l
}

// CreateTable checks that the server is ready for the client: that the pglock
// extension (0.3.0 or later) is installed in the database, on the
// search_path, and usable by the connecting role. When it is missing, it runs
// CREATE EXTENSION pglock, which only a superuser may. Otherwise it returns
// an error wrapping ErrExtensionNotInstalled that says what to run. No table
// is created: pglock keeps every lock in its own table.
func (c *Client) CreateTable() error {
	return c.checkExtension(context.Background())
}

// TryCreateTable is CreateTable: with pglock there is no table to find
// already there.
func (c *Client) TryCreateTable() error {
	return c.checkExtension(context.Background())
}

func (c *Client) checkExtension(ctx context.Context) error {
	var version string
	err := c.db.QueryRowContext(ctx, sqlExtensionVersion).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		if _, cerr := c.db.ExecContext(ctx, sqlCreateExtension); cerr != nil {
			return fmt.Errorf("%w: it is not installed, and creating it failed (%v): "+
				"as a superuser, install pglock on the server and run CREATE EXTENSION pglock in this database",
				ErrExtensionNotInstalled, cerr)
		}
		c.log.Debug("created the extension pglock")
		err = c.db.QueryRowContext(ctx, sqlExtensionVersion).Scan(&version)
	}
	if err != nil {
		return typedError(err, "cannot read the version of the extension pglock")
	}
	if !versionAtLeast(version, 0, 3) {
		return fmt.Errorf("%w: version %s is installed, this client needs 0.3.0 or later: "+
			"install the new version and run ALTER EXTENSION pglock UPDATE", ErrExtensionNotInstalled, version)
	}
	var (
		role           string
		member, onPath bool
		schema         sql.NullString
	)
	if err := c.db.QueryRowContext(ctx, sqlCanUse).Scan(&role, &member, &onPath, &schema); err != nil {
		return typedError(err, "cannot check the role's access to pglock")
	}
	if !member {
		return fmt.Errorf("%w: role %q is not a member of pglock_user: run GRANT pglock_user TO %q",
			ErrExtensionNotInstalled, role, role)
	}
	if !onPath {
		return fmt.Errorf("%w: its functions, in schema %q, are not on the search_path of the connection: "+
			"add the schema to search_path (in the connection string, or ALTER ROLE %q SET search_path = ...)",
			ErrExtensionNotInstalled, schema.String, role)
	}
	return nil
}

// versionAtLeast compares a version "major.minor[.patch]" with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || (a == major && b >= minor)
}

// DropTable removes the client's locks: in a name space of its own
// (WithCustomTable), every lock of the name space held (or kept) by the
// connecting role, whatever its owner label; in pglock's own name space, only
// the locks of this client's owner label. Holders of locks so removed find
// them lost at their next heartbeat. Other roles' locks are never touched
// (pglock would not let it). It fails when the extension is not installed.
func (c *Client) DropTable() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*c.leaseDuration)
	defer cancel()
	ownerFilter := ""
	if c.namespace == "" {
		ownerFilter = c.owner
	}
	type entry struct {
		name, owner string
		rvn         int64
		released    bool
	}
	var entries []entry
	rows, err := c.db.QueryContext(ctx, sqlOwnLocks, c.namespace, ownerFilter)
	if err != nil {
		return typedError(err, "cannot cleanup the database")
	}
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.name, &e.owner, &e.rvn, &e.released); err != nil {
			rows.Close()
			return typedError(err, "cannot cleanup the database")
		}
		entries = append(entries, e)
	}
	if err := rows.Close(); err != nil {
		return typedError(err, "cannot cleanup the database")
	}
	if err := rows.Err(); err != nil {
		return typedError(err, "cannot cleanup the database")
	}
	for _, e := range entries {
		owner, rvn := e.owner, e.rvn
		if e.released {
			// A kept entry: take it (free, so at once) to delete it.
			var (
				acquired bool
				newRVN   sql.NullInt64
				holder   sql.NullString
				lease    sql.NullInt64
				data     []byte
			)
			// replace_data with no data: the entry's data goes too.
			err := c.db.QueryRowContext(ctx, sqlAcquire, e.name, c.owner, micros(c.leaseDuration),
				nil, true, nil, nil).Scan(&acquired, &newRVN, &holder, &lease, &data)
			if err != nil {
				return typedError(err, "cannot cleanup the database")
			}
			if !acquired || !newRVN.Valid {
				continue // taken by someone meanwhile: theirs now
			}
			owner, rvn = c.owner, newRVN.Int64
		}
		var ok bool
		if err := c.db.QueryRowContext(ctx, sqlRelease, e.name, owner, rvn, false).Scan(&ok); err != nil {
			return typedError(err, "cannot cleanup the database")
		}
		c.log.Debug("dropped lock %v (released: %v)", e.name, ok)
	}
	return nil
}

// Acquire waits for the lock name and takes it; see AcquireContext.
func (c *Client) Acquire(name string, opts ...LockOption) (*Lock, error) {
	return c.AcquireContext(context.Background(), name, opts...)
}

// AcquireContext takes the lock name, waiting until it is free or its
// holder's RVN has stood still for the holder's lease (the holder stopped
// renewing it), or until ctx is done, when it returns ErrNotAcquired. With
// FailIfLocked it returns at once: the lock, showing its holder, and
// ErrNotAcquired.
//
// The wait happens in the server (pglock_acquire_wait), which sees a release
// at once, in calls of at most 10 s (and never past ctx's deadline); a
// canceled ctx cancels the call in the server. Waiting calls hold a
// connection each, and the clients of one *sql.DB let at most three quarters
// of its MaxOpenConns wait at once (the rest queue in the client, in arrival
// order), so that releases and heartbeats find connections.
//
// The lock's heartbeats, if the client has a heartbeat period, run until the
// lock is released or lost, or the heartbeat context is done: ctx, unless
// WithCustomHeartbeatContext gives another.
func (c *Client) AcquireContext(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	l := c.newLock(ctx, name, opts)
	maxWait := waitChunk
	for attempt := 0; ; {
		if ctx.Err() != nil {
			l.heartbeatCancel()
			return nil, ErrNotAcquired
		}
		start := time.Now()
		acquired, err := c.tryAcquire(ctx, l, maxWait)
		switch {
		case err != nil && ctx.Err() != nil:
			l.heartbeatCancel()
			return nil, ErrNotAcquired
		case err != nil && sqlState(err) == stateQueryCanceled && time.Since(start) >= 20*time.Millisecond:
			// Canceled with ctx alive, after a while: a
			// statement_timeout shorter than the wait. Wait in
			// shorter calls.
			maxWait = max(time.Since(start)/2, 10*time.Millisecond)
			c.log.Debug("acquire %v: waits of %v from now on, after %v", name, maxWait, err)
			continue
		case err != nil && (isRetryable(err) || sqlState(err) == stateQueryCanceled) && attempt < maxRetries:
			// Or a cancel meant for another statement. Try again.
			attempt++
			c.log.Debug("acquire %v: retrying after %v", name, err)
			continue
		case err != nil:
			l.heartbeatCancel()
			c.log.Error("acquire %v: %v", name, err)
			return nil, typedError(err, "cannot acquire the lock")
		case acquired:
			c.log.Debug("acquired %v at rvn %v", name, l.RecordVersionNumber())
			c.startHeartbeat(l)
			return l, nil
		case l.failIfLocked:
			l.heartbeatCancel()
			c.log.Debug("not acquired %v: held by %v", name, l.Owner())
			return l, ErrNotAcquired
		}
	}
}

// tryAcquire makes one attempt: a takeover or a fail-fast try (pglock_acquire),
// or one wait in the server (pglock_acquire_wait).
func (c *Client) tryAcquire(ctx context.Context, l *Lock, maxWait time.Duration) (bool, error) {
	now := time.Now()
	obs, seen := c.observed(l.full)
	var observed any // NULL, or the RVN seen standing still for its lease
	if seen && !now.Before(obs.takeoverAt()) {
		observed = obs.rvn
	}
	var storeData, dataIfNone []byte
	if l.replaceData {
		storeData = l.data
	} else {
		dataIfNone = l.data
	}
	statement, last := sqlAcquire, observed
	callTimeout := c.leaseDuration
	if !l.failIfLocked && observed == nil {
		wait := maxWait
		if seen {
			wait = min(wait, obs.takeoverAt().Sub(now))
		}
		if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(deadline))
		}
		wait = max(wait, time.Millisecond)
		if err := c.waiters.enter(ctx); err != nil {
			return false, err
		}
		defer c.waiters.leave()
		statement, last, callTimeout = sqlAcquireWait, micros(wait), wait+c.leaseDuration
	}
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var (
		acquired bool
		rvn      sql.NullInt64
		owner    sql.NullString
		lease    sql.NullInt64
		data     []byte
	)
	sent := time.Now()
	args := []any{l.full, c.owner, micros(c.leaseDuration), nullBytes(storeData), l.replaceData, last, nullBytes(dataIfNone)}
	dest := []any{&acquired, &rvn, &owner, &lease, &data}
	var err error
	if statement == sqlAcquireWait && c.waitInTx.Load() {
		err = c.queryReadCommitted(callCtx, statement, args, dest)
	} else {
		err = c.db.QueryRowContext(callCtx, statement, args...).Scan(dest...)
	}
	if statement == sqlAcquireWait && sqlState(err) == stateInvalidTransactionState && !c.waitInTx.Load() {
		// The role's default isolation is REPEATABLE READ or
		// SERIALIZABLE, where a wait would not see the release it waits
		// for (pglock refuses it): wait in READ COMMITTED transactions.
		c.log.Debug("waiting in READ COMMITTED transactions from now on: %v", err)
		c.waitInTx.Store(true)
		err = c.queryReadCommitted(callCtx, statement, args, dest)
	}
	if err != nil {
		return false, err
	}
	if acquired && statement == sqlAcquireWait && time.Since(sent) > c.leaseDuration/8 {
		acquired, rvn, sent, err = c.renewAfterWait(ctx, l, rvn.Int64, sent)
		if err != nil {
			return false, err
		}
	}
	if acquired {
		c.forget(l.full)
		l.mu.Lock()
		l.held, l.isReleased = true, false
		l.owner = c.owner
		l.data = data
		l.renewedAt(rvn.Int64, sent)
		l.mu.Unlock()
		return true, nil
	}
	// Refused. rvn, owner and lease are NULL when nobody holds the lock
	// yet shows: a holder whose acquire has not committed, or (pglock
	// 0.4.0) a free lock kept for a waiter queued in the server.
	if rvn.Valid && lease.Valid {
		c.observe(l.full, rvn.Int64, time.Duration(lease.Int64)*time.Microsecond, observed != nil)
	}
	l.mu.Lock()
	l.owner = owner.String
	l.recordVersionNumber = rvn.Int64
	l.isReleased = true
	l.mu.Unlock()
	return false, nil
}

// queryReadCommitted runs a one-row query in a READ COMMITTED transaction of
// its own, and commits it.
func (c *Client) queryReadCommitted(ctx context.Context, query string, args, dest []any) error {
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, query, args...).Scan(dest...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// renewAfterWait renews a lock that a wait in the server acquired: the lock
// counts as renewed when the request was sent (the write came later, but
// when exactly is unknown), and a long wait would leave it little of its
// lease, or none. A renewal now gives it a lease from now. A lock found not
// held (removed by an operator meanwhile) was not acquired after all; one
// whose renewal fails otherwise keeps the wait's time, and fails the
// acquire if its deadline has passed already.
func (c *Client) renewAfterWait(ctx context.Context, l *Lock, rvn int64, sent time.Time) (bool, sql.NullInt64, time.Time, error) {
	callCtx, cancel := context.WithTimeout(ctx, c.leaseDuration)
	defer cancel()
	var newRVN int64
	renewSent := time.Now()
	err := c.db.QueryRowContext(callCtx, sqlHeartbeat, l.full, c.owner, rvn, micros(c.leaseDuration)).Scan(&newRVN)
	switch s := sqlState(err); {
	case err == nil:
		return true, sql.NullInt64{Int64: newRVN, Valid: true}, renewSent, nil
	case s == stateNotHeld || s == stateOtherRole:
		c.log.Debug("acquired %v after a wait, then found it not held: %v", l.name, err)
		return false, sql.NullInt64{}, sent, nil
	case time.Now().After(sent.Add(c.leaseDuration - min(c.period(), c.leaseDuration/4))):
		return false, sql.NullInt64{}, sent, err
	}
	c.log.Debug("acquired %v after a wait; renewing it failed: %v", l.name, err)
	return true, sql.NullInt64{Int64: rvn, Valid: true}, sent, nil
}

// nullBytes sends a nil slice as NULL, whatever the driver makes of nil slices.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func (c *Client) observed(full string) (observation, bool) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	o, ok := c.seen[full]
	return o, ok
}

// observe remembers a holder's RVN; the first sight of an RVN starts its
// clock. tried says a takeover of that RVN was just refused: the next
// waits a tenth of the lease (10 ms to 1 s).
func (c *Client) observe(full string, rvn int64, lease time.Duration, tried bool) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if o, ok := c.seen[full]; ok && o.rvn == rvn {
		if tried {
			o.notBefore = time.Now().Add(min(max(lease/10, 10*time.Millisecond), time.Second))
			c.seen[full] = o
		}
		return
	}
	if len(c.seen) >= maxObservations {
		for k := range c.seen { // forget any half
			delete(c.seen, k)
			if len(c.seen) < maxObservations/2 {
				break
			}
		}
	}
	c.seen[full] = observation{rvn: rvn, lease: lease, seenAt: time.Now()}
}

func (c *Client) forget(full string) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	delete(c.seen, full)
}

// Do runs f while holding the lock name: it acquires it (as AcquireContext
// does, with ctx), runs f with a context that is canceled when the lock is
// lost (or its heartbeat context is done, or ctx is), and releases the lock
// when f returns. It returns f's error, or the acquire's.
func (c *Client) Do(ctx context.Context, name string, f func(context.Context, *Lock) error, opts ...LockOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l, err := c.AcquireContext(ctx, name, opts...)
	if err != nil {
		return err
	}
	defer l.Close()
	stop := context.AfterFunc(l.heartbeatContext, cancel)
	defer stop()
	return f(ctx, l)
}

// Release releases the lock; see ReleaseContext.
func (c *Client) Release(l *Lock) error {
	return c.ReleaseContext(context.Background(), l)
}

// ReleaseContext stops the lock's heartbeats and releases it, keeping its
// entry and data with KeepOnRelease. It returns ErrLockAlreadyReleased when
// the client no longer holds the lock (released before, lost, or never
// acquired); the lock is then released all the same, as far as the client is
// concerned.
func (c *Client) ReleaseContext(ctx context.Context, l *Lock) error {
	l.heartbeatCancel()
	l.op.Lock()
	defer l.op.Unlock()
	c.renewer.remove(l)
	l.mu.Lock()
	held, owner, rvn := l.held, l.owner, l.recordVersionNumber
	if !held {
		l.isReleased = true
		l.mu.Unlock()
		return ErrLockAlreadyReleased
	}
	l.mu.Unlock()
	var released bool
	err := c.retry(ctx, func(ctx context.Context) error {
		return c.db.QueryRowContext(ctx, sqlRelease, l.full, owner, rvn, l.keepOnRelease).Scan(&released)
	})
	if err != nil {
		c.log.Error("release %v: %v", l.name, err)
		return typedError(err, "cannot release the lock")
	}
	l.mu.Lock()
	l.held, l.isReleased = false, true
	l.mu.Unlock()
	if !released {
		c.log.Debug("release %v: not held at rvn %v", l.name, rvn)
		return ErrLockAlreadyReleased
	}
	c.log.Debug("released %v", l.name)
	return nil
}

// retry runs call again after a serialization failure or deadlock (which
// pglock's calls in autocommit do not raise) or a broken connection, a few
// times at most, all within a lease (and ctx).
func (c *Client) retry(ctx context.Context, call func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.leaseDuration)
	defer cancel()
	var err error
	for attempt := 0; attempt < maxRetries; attempt++ {
		err = call(ctx)
		if err == nil || ctx.Err() != nil || !(isRetryable(err) || isUnavailable(err)) {
			return err
		}
		c.log.Debug("retrying: %v", err)
		select {
		case <-time.After(c.retryInterval()):
		case <-ctx.Done():
			return err
		}
	}
	return err
}

// SendHeartbeat renews the lock now, as the client's heartbeats do. It
// returns an error wrapping ErrLockAlreadyReleased when the client does not
// hold the lock (then it is marked lost, and its heartbeat context canceled);
// other errors (a broken connection, ...) leave the lock as it is, to be
// renewed again before its lease runs out.
func (c *Client) SendHeartbeat(ctx context.Context, l *Lock) error {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	held, released, owner, rvn := l.held, l.isReleased, l.owner, l.recordVersionNumber
	l.mu.Unlock()
	if !held || released {
		return ErrLockAlreadyReleased
	}
	var newRVN int64
	var sent time.Time
	err := c.retry(ctx, func(ctx context.Context) error {
		sent = time.Now()
		return c.db.QueryRowContext(ctx, sqlHeartbeat, l.full, owner, rvn, micros(c.leaseDuration)).Scan(&newRVN)
	})
	if err != nil {
		if s := sqlState(err); s == stateNotHeld || s == stateOtherRole {
			c.lose(l, err.Error(), true)
			return fmt.Errorf("cannot send heartbeat (%v): %w: %w", l.name, ErrLockAlreadyReleased, err)
		}
		return fmt.Errorf("cannot send heartbeat (%v): %w", l.name, typedError(err, "heartbeat failed"))
	}
	l.mu.Lock()
	if !l.isReleased {
		l.renewedAt(newRVN, sent)
	} else {
		l.recordVersionNumber = newRVN // lost meanwhile: a release frees it
	}
	l.mu.Unlock()
	c.renewer.poke()
	return nil
}

// lose marks l lost: released as far as the client is concerned, its
// heartbeats stopped and its heartbeat context (and so Do's context)
// canceled. notHeld says the server no longer has it at our RVN (a release
// would be pointless).
func (c *Client) lose(l *Lock, reason string, notHeld bool) {
	l.mu.Lock()
	if l.isReleased {
		l.mu.Unlock()
		return
	}
	l.isReleased = true
	l.lostReason = reason
	if notHeld {
		l.held = false
	}
	l.mu.Unlock()
	c.log.Error("heartbeat missed: lock %v lost: %v", l.name, reason)
	l.heartbeatCancel()
	c.renewer.remove(l)
}

// GetData returns the data of the lock name without acquiring it.
func (c *Client) GetData(name string) ([]byte, error) {
	return c.GetDataContext(context.Background(), name)
}

// Get reads the lock name without acquiring it.
func (c *Client) Get(name string) (*Lock, error) {
	return c.GetContext(context.Background(), name)
}

// GetDataContext returns the data of the lock name without acquiring it: nil
// for another role's lock, whose data pglock does not show.
func (c *Client) GetDataContext(ctx context.Context, name string) ([]byte, error) {
	l, err := c.GetContext(ctx, name)
	return l.Data(), err
}

// GetContext reads the lock name without acquiring it (pglock_get; it waits
// for nobody). The lock returned shows its owner, RVN and data (nil for
// another role's lock); it is not held, so Release and SendHeartbeat return
// ErrLockAlreadyReleased. A missing lock gives ErrLockNotFound, with a lock
// that has only its name.
func (c *Client) GetContext(ctx context.Context, name string) (*Lock, error) {
	l := c.newLock(ctx, name, nil)
	l.heartbeatCancel()
	l.isReleased = true
	l.owner = ""
	var (
		owner    sql.NullString
		rvn      sql.NullInt64
		released bool
		data     []byte
	)
	err := c.retry(ctx, func(ctx context.Context) error {
		return c.db.QueryRowContext(ctx, sqlGet, l.full).Scan(&owner, &rvn, &released, &data)
	})
	if errors.Is(err, sql.ErrNoRows) {
		c.log.Error("missing lock entry: %v", name)
		return l, ErrLockNotFound
	}
	if err != nil {
		return l, typedError(err, "cannot load the data of this lock")
	}
	l.owner, l.recordVersionNumber, l.data = owner.String, rvn.Int64, data
	return l, nil
}

// GetAllLocks returns every lock of the client's name space; see
// GetAllLocksContext.
func (c *Client) GetAllLocks() ([]*ReadOnlyLock, error) {
	return c.GetAllLocksContext(context.Background())
}

// GetAllLocksContext returns every lock of the client's name space (every
// lock of the database in pglock's own name space), held or kept, of any role;
// data only for the connecting role's locks.
func (c *Client) GetAllLocksContext(ctx context.Context) ([]*ReadOnlyLock, error) {
	var locks []*ReadOnlyLock
	err := c.retry(ctx, func(ctx context.Context) error {
		locks = nil
		rows, err := c.db.QueryContext(ctx, sqlAllLocks, c.namespace)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				name     string
				owner    sql.NullString
				rvn      sql.NullInt64
				released bool
				data     []byte
			)
			if err := rows.Scan(&name, &owner, &rvn, &released, &data); err != nil {
				return err
			}
			locks = append(locks, &ReadOnlyLock{
				client:              c,
				name:                strings.TrimPrefix(name, c.namespace),
				full:                name,
				leaseDuration:       c.leaseDuration,
				owner:               owner.String,
				recordVersionNumber: rvn.Int64,
				isReleased:          released,
				data:                data,
			})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, typedError(err, "cannot query all locks")
	}
	return locks, nil
}
