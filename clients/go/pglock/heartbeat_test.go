package pglock_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pglock/pglock/clients/go/pglock"
)

func TestCustomHeartbeatContext(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 4),
			pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		ctx := testContext(t, 20*time.Second)

		t.Run("inherited context", func(t *testing.T) {
			l, err := c.Acquire(lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			start := l.RecordVersionNumber()
			if !eventually(ctx, func() bool { return l.RecordVersionNumber() > start }) {
				t.Fatal("heartbeat did not run")
			}
		})
		t.Run("custom context", func(t *testing.T) {
			hb, cancel := context.WithCancel(context.Background())
			name := lockName(t)
			l, err := c.Acquire(name, pglock.WithCustomHeartbeatContext(hb))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			start := l.RecordVersionNumber()
			if !eventually(ctx, func() bool { return l.RecordVersionNumber() > start }) {
				t.Fatal("heartbeat did not run")
			}
			cancel()
			// A renewal in flight may still land; after that, none.
			time.Sleep(300 * time.Millisecond)
			stopped := l.RecordVersionNumber()
			time.Sleep(3 * 200 * time.Millisecond)
			if now := l.RecordVersionNumber(); now != stopped {
				t.Fatalf("heartbeat did not stop after cancel: %d -> %d", stopped, now)
			}
			if row, _ := lockRow(t, name); row.rvn != stopped {
				t.Fatalf("the server has rvn %d, the lock %d", row.rvn, stopped)
			}
			// Not renewed, but not lost either: still held, and released.
			if l.IsReleased() {
				t.Error("a lock whose heartbeats stopped is not released")
			}
			if err := l.Close(); err != nil {
				t.Error("release:", err)
			}
		})
		t.Run("acquire context", func(t *testing.T) {
			// As in the original, the heartbeats follow AcquireContext's
			// context.
			actx, cancel := context.WithCancel(ctx)
			l, err := c.AcquireContext(actx, lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cancel()
			time.Sleep(300 * time.Millisecond)
			stopped := l.RecordVersionNumber()
			time.Sleep(3 * 200 * time.Millisecond)
			if now := l.RecordVersionNumber(); now != stopped {
				t.Fatalf("heartbeat did not stop with the acquire's context: %d -> %d", stopped, now)
			}
		})
	})
}

func TestSendHeartbeat(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		c := newClient(t, db, pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(0))
		ctx := testContext(t, 20*time.Second)
		t.Run("good", func(t *testing.T) {
			name := lockName(t)
			l, err := c.Acquire(name)
			if err != nil {
				t.Fatal(err)
			}
			before := l.RecordVersionNumber()
			if err := c.SendHeartbeat(ctx, l); err != nil {
				t.Fatal("SendHeartbeat:", err)
			}
			after := l.RecordVersionNumber()
			if row, _ := lockRow(t, name); after <= before || row.rvn != after {
				t.Errorf("rvn %d -> %d, the server's %d", before, after, row.rvn)
			}
			if err := c.Release(l); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("after release", func(t *testing.T) {
			l, err := c.Acquire(lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Release(l); err != nil {
				t.Fatal(err)
			}
			if err := c.SendHeartbeat(ctx, l); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
				t.Error("heartbeat after release:", err)
			}
			if err := l.Close(); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
				t.Error("second release:", err)
			}
		})
		t.Run("lost", func(t *testing.T) {
			name := lockName(t)
			l, err := c.Acquire(name)
			if err != nil {
				t.Fatal(err)
			}
			admin(t, "SELECT pglock_force_release($1)", name)
			err = c.SendHeartbeat(ctx, l)
			if !errors.Is(err, pglock.ErrLockAlreadyReleased) || sqlStateOf(err) != "55000" {
				t.Error("heartbeat of a lost lock:", err)
			}
			if !l.IsReleased() {
				t.Error("lost lock not marked released")
			}
		})
		t.Run("racy", func(t *testing.T) {
			// Heartbeats as often as they go (a period of 1 ns is
			// renewed every 10 ms) and a release: no deadlock.
			fast := newClient(t, db, pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(1))
			for i := 0; i < 5; i++ {
				l, err := fast.Acquire(lockName(t))
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(i) * 15 * time.Millisecond)
				done := make(chan error, 1)
				go func() { done <- fast.Release(l) }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatal("release:", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("deadlock between heartbeats and release")
				}
			}
		})
	})
}

func sqlStateOf(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

func TestReleaseLostLock(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 2), pglock.WithHeartbeatFrequency(0))
		name := lockName(t)
		l, err := c.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		admin(t, "SELECT pglock_force_release($1)", name)
		if err := c.Release(l); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
			t.Error("release of a lost lock:", err)
		}
		if !l.IsReleased() {
			t.Fatal("expected lock to be released")
		}
	})
}

func TestOwner(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 2), pglock.WithOwner("custom-owner"))
		name := lockName(t)
		l, err := c.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.Owner() != "custom-owner" {
			t.Errorf("owner not stored in the acquired lock: %q", l.Owner())
		}
		if row, _ := lockRow(t, name); row.owner != "custom-owner" || row.holder != roleApp {
			t.Errorf("the server's row: %+v", row)
		}
		// The default owner label.
		d := newClient(t, openDB(t, driver, roleApp, 2))
		l2, err := d.Acquire(lockName(t))
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if !strings.HasPrefix(l2.Owner(), "pglock-") {
			t.Errorf("default owner %q", l2.Owner())
		}
	})
}

// TestOneHeartbeatPerPeriod counts the heartbeat statements a client holding
// 50 locks sends: one pglock_heartbeat_many per period for all of them.
func TestOneHeartbeatPerPeriod(t *testing.T) {
	t.Parallel()
	requireServer(t)
	connector, err := pq.NewConnector(dsn(roleApp))
	if err != nil {
		t.Fatal(err)
	}
	var calls, many atomic.Int64
	db := sql.OpenDB(countingConnector{connector, &calls, &many})
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	const period = 200 * time.Millisecond
	c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(period))
	var locks []*pglock.Lock
	for i := 0; i < 50; i++ {
		// Tricky names travel in the array literal too.
		l, err := c.Acquire(lockName(t) + fmt.Sprintf(`-%d "quoted" \back\slash {braces}, comma ✓ NULL`, i))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	first := make([]int64, len(locks))
	for i, l := range locks {
		first[i] = l.RecordVersionNumber()
	}
	start := time.Now()
	calls.Store(0)
	many.Store(0)
	time.Sleep(5 * period)
	n, elapsed := many.Load(), time.Since(start)
	for i, l := range locks {
		if l.RecordVersionNumber() <= first[i] || l.IsReleased() {
			t.Errorf("lock %d not renewed: %d -> %d", i, first[i], l.RecordVersionNumber())
		}
	}
	// Each period at most one call (plus one that began before the
	// count), never one per lock.
	if max := int64(elapsed/period) + 2; n > max || n == 0 {
		t.Errorf("%d heartbeat_many calls in %v for 50 locks, want 1 to %d", n, elapsed, max)
	}
	if other := calls.Load() - n; other != 0 {
		t.Errorf("%d other statements while only renewing", other)
	}
	for _, l := range locks {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
}

// countingConnector counts the statements sent through it, and the
// pglock_heartbeat_many ones apart.
type countingConnector struct {
	driver.Connector
	calls, many *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c}, nil
}

// countingConn hides the driver's fast paths, so that database/sql prepares
// every statement, and counts them there.
type countingConn struct {
	driver.Conn
	c countingConnector
}

func (c countingConn) Prepare(query string) (driver.Stmt, error) {
	c.c.calls.Add(1)
	if strings.Contains(query, "pglock_heartbeat_many") {
		c.c.many.Add(1)
	}
	return c.Conn.Prepare(query)
}

func TestNamespaces(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 6)
		name := lockName(t)
		ctx := testContext(t, 20*time.Second)
		var locks []*pglock.Lock
		for _, table := range []string{"alpha", "beta", pglock.DefaultTableName} {
			c := newClient(t, db, pglock.WithCustomTable(table))
			l, err := c.AcquireContext(ctx, name, pglock.FailIfLocked())
			if err != nil {
				t.Fatalf("table %q: %v", table, err)
			}
			locks = append(locks, l)
		}
		// The default table and "" are pglock's own name space.
		if _, err := newClient(t, db, pglock.WithCustomTable("")).AcquireContext(ctx, name, pglock.FailIfLocked()); !errors.Is(err, pglock.ErrNotAcquired) {
			t.Error("the default table and \"\" are not one name space:", err)
		}
		for _, full := range []string{"alpha/" + name, "beta/" + name, name} {
			if _, ok := lockRow(t, full); !ok {
				t.Errorf("no lock %q in pglock", full)
			}
		}
		for _, l := range locks {
			if l.Name() != name {
				t.Errorf("Name() = %q", l.Name())
			}
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}
	})
}

func TestGetAllLocks(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		table := lockName(t)
		c := newClient(t, openDB(t, driver, roleApp, 4), pglock.WithCustomTable(table),
			pglock.WithHeartbeatFrequency(0), pglock.WithOwner("owner"))
		names := map[string]bool{}
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("lock-%d", i)
			l, err := c.Acquire(name, pglock.WithData([]byte("42")))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			names[name] = true
		}
		kept, err := c.Acquire("kept", pglock.KeepOnRelease(), pglock.WithData([]byte("checkpoint")))
		if err != nil {
			t.Fatal(err)
		}
		if err := kept.Close(); err != nil {
			t.Fatal(err)
		}
		// Another role's lock in the same name space, and a lock outside it.
		other := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithCustomTable(table), pglock.WithOwner("other"))
		ol, err := other.Acquire("theirs", pglock.WithData([]byte("secret")))
		if err != nil {
			t.Fatal(err)
		}
		defer ol.Close()
		outside := newClient(t, openDB(t, driver, roleApp, 2))
		xl, err := outside.Acquire(table + "-outside")
		if err != nil {
			t.Fatal(err)
		}
		defer xl.Close()

		locks, err := c.GetAllLocks()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]*pglock.ReadOnlyLock{}
		for _, l := range locks {
			t.Log(l.Name(), l.Owner(), string(l.Data()), l.RecordVersionNumber(), l.IsReleased())
			seen[l.Name()] = l
		}
		if len(locks) != 7 {
			t.Errorf("%d locks, want 7", len(locks))
		}
		for name := range names {
			l := seen[name]
			if l == nil || l.Owner() != "owner" || string(l.Data()) != "42" || l.IsReleased() || l.RecordVersionNumber() <= 0 {
				t.Errorf("lock %s: %+v", name, l)
			}
		}
		if l := seen["kept"]; l == nil || !l.IsReleased() || string(l.Data()) != "checkpoint" {
			t.Errorf("kept lock: %+v", l)
		}
		if l := seen["theirs"]; l == nil || l.Owner() != "other" || l.Data() != nil {
			t.Errorf("another role's lock (its data must not show): %+v", l)
		}
	})
}

func TestDropTable(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		table := lockName(t)
		db := openDB(t, driver, roleApp, 6)
		ctx := testContext(t, 20*time.Second)
		mine := newClient(t, db, pglock.WithCustomTable(table),
			pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		// Another owner of the same role and name space: one application.
		peer := newClient(t, db, pglock.WithCustomTable(table), pglock.WithOwner("peer"))
		other := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithCustomTable(table))
		outside := newClient(t, db, pglock.WithCustomTable(table+"-other"))
		global := newClient(t, db)

		held, err := mine.AcquireContext(ctx, "held")
		if err != nil {
			t.Fatal(err)
		}
		acquireAll := func(c *pglock.Client, names ...string) []*pglock.Lock {
			var ls []*pglock.Lock
			for _, n := range names {
				l, err := c.AcquireContext(ctx, n, pglock.WithData([]byte(n)))
				if err != nil {
					t.Fatal(err)
				}
				ls = append(ls, l)
			}
			return ls
		}
		kept, err := peer.AcquireContext(ctx, "kept", pglock.KeepOnRelease(), pglock.WithData([]byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		if err := kept.Close(); err != nil {
			t.Fatal(err)
		}
		acquireAll(peer, "peer's")
		survivors := acquireAll(other, "other role's")
		survivors = append(survivors, acquireAll(outside, "outside")...)
		survivors = append(survivors, acquireAll(global, table+"-global")...)
		survivorNames := []string{table + "/other role's", table + "-other/outside", table + "-global"}

		if err := mine.DropTable(); err != nil {
			t.Fatal("DropTable:", err)
		}
		// The name space's locks of the role are gone, held or kept...
		for _, n := range []string{"held", "kept", "peer's"} {
			if _, ok := lockRow(t, table+"/"+n); ok {
				t.Errorf("lock %q survived DropTable", n)
			}
		}
		// ...and the holder learns it at its next heartbeat.
		if !eventually(ctx, held.IsReleased) {
			t.Error("holder of a dropped lock not told")
		}
		// Other roles', other name spaces' and pglock's own survive.
		for i, l := range survivors {
			if row, ok := lockRow(t, survivorNames[i]); !ok || row.rvn != l.RecordVersionNumber() {
				t.Errorf("lock %q: %+v %v", survivorNames[i], row, ok)
			}
			if err := l.Close(); err != nil {
				t.Errorf("lock %q: %v", l.Name(), err)
			}
		}
		// In pglock's own name space DropTable takes only the client's
		// owner's locks.
		g1 := acquireAll(newClient(t, db, pglock.WithOwner("g1-"+table)), table+"-g1")
		g2c := newClient(t, db, pglock.WithOwner("g2-"+table))
		acquireAll(g2c, table+"-g2")
		if err := g2c.DropTable(); err != nil {
			t.Fatal(err)
		}
		if _, ok := lockRow(t, table+"-g2"); ok {
			t.Error("DropTable in the default name space left the owner's lock")
		}
		if _, ok := lockRow(t, table+"-g1"); !ok {
			t.Error("DropTable in the default name space took another owner's lock")
		}
		g1[0].Close()
	})
}

func TestFence(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		ctx := testContext(t, 20*time.Second)
		c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		name := lockName(t)
		l, err := c.AcquireContext(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		fence := func() (int64, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			token, err := l.Fence(ctx, tx)
			if err != nil {
				return 0, err
			}
			return token, tx.Commit()
		}
		// Fences taken while the heartbeats run never see a moving RVN,
		// and the tokens only grow.
		var last int64
		for i := 0; i < 10; i++ {
			token, err := fence()
			if err != nil {
				t.Fatal("fence of a held lock:", err)
			}
			if token < last {
				t.Errorf("fencing token went back: %d after %d", token, last)
			}
			last = token
			time.Sleep(60 * time.Millisecond)
		}
		admin(t, "SELECT pglock_force_release($1)", name)
		if _, err := fence(); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
			t.Error("fence of a lost lock:", err)
		}
		if !l.IsReleased() {
			t.Error("lock found lost by a fence not marked released")
		}
	})
}

// TestWaitSeesRelease: a waiting acquire gets the lock when its holder
// releases it, long before the holder's lease (60 s) could run out.
func TestWaitSeesRelease(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		holder := newClient(t, db, pglock.WithLeaseDuration(60*time.Second), pglock.WithHeartbeatFrequency(0))
		waiter := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(0))
		name := lockName(t)
		l, err := holder.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		var got *pglock.Lock
		var werr error
		go func() {
			defer wg.Done()
			got, werr = waiter.AcquireContext(testContext(t, 20*time.Second), name)
		}()
		time.Sleep(700 * time.Millisecond) // well into the waiter's second call
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if werr != nil {
			t.Fatal("waiter:", werr)
		}
		if got.RecordVersionNumber() <= l.RecordVersionNumber() {
			t.Errorf("rvn went back: %d after %d", got.RecordVersionNumber(), l.RecordVersionNumber())
		}
		got.Close()
	})
}

// TestLongWaitKeepsLease: a wait in the server longer than the waiter's own
// lease (1 s) ends with a lock that is not lost at once: the client renews
// it before returning it, so its lease counts from then.
func TestLongWaitKeepsLease(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		holder := newClient(t, db, pglock.WithLeaseDuration(60*time.Second), pglock.WithHeartbeatFrequency(0))
		waiter := newClient(t, db, pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		name := lockName(t)
		l, err := holder.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(1500*time.Millisecond, func() { l.Close() })
		got, err := waiter.AcquireContext(testContext(t, 20*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		defer got.Close()
		start := got.RecordVersionNumber()
		if got.IsReleased() {
			t.Fatal("lost as soon as acquired")
		}
		if !eventually(testContext(t, 5*time.Second), func() bool { return got.RecordVersionNumber() > start }) || got.IsReleased() {
			t.Fatal("not renewed after a long wait")
		}
	})
}

// TestStatementTimeout: a role whose statement_timeout (300 ms) is shorter
// than the client's waits in the server still waits, in shorter calls, and
// gets the lock when it is released.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		requireServer(t)
		db, err := sql.Open(driver, dsn(roleApp)+" options='-c statement_timeout=300'")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(4)
		t.Cleanup(func() { db.Close() })
		holder := newClient(t, openDB(t, driver, roleApp, 2), pglock.WithLeaseDuration(60*time.Second), pglock.WithHeartbeatFrequency(0))
		waiter := newClient(t, db, pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(time.Second))
		name := lockName(t)
		l, err := holder.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(5*time.Second, func() { l.Close() }) // past 10 retries of 300 ms
		got, err := waiter.AcquireContext(testContext(t, 20*time.Second), name)
		if err != nil {
			t.Fatal("waiting with a short statement_timeout:", err)
		}
		got.Close()
	})
}

// TestSerializableDefault: a role whose transactions default to
// SERIALIZABLE (where pglock refuses to wait) waits all the same, in READ
// COMMITTED transactions of the client's own, and the rest works as usual.
func TestSerializableDefault(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		requireServer(t)
		db, err := sql.Open(driver, dsn(roleApp)+" options='-c default_transaction_isolation=serializable'")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(4)
		t.Cleanup(func() { db.Close() })
		c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		ctx := testContext(t, 20*time.Second)
		name := lockName(t)
		l, err := c.AcquireContext(ctx, name, pglock.KeepOnRelease(), pglock.WithData([]byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.AcquireContext(ctx, name, pglock.FailIfLocked()); !errors.Is(err, pglock.ErrNotAcquired) {
			t.Error("FailIfLocked:", err)
		}
		start := l.RecordVersionNumber()
		if !eventually(ctx, func() bool { return l.RecordVersionNumber() > start }) || l.IsReleased() {
			t.Fatal("not renewed")
		}
		time.AfterFunc(500*time.Millisecond, func() { l.Close() })
		l2, err := c.AcquireContext(ctx, name) // waits for the release
		if err != nil {
			t.Fatal("waiting under SERIALIZABLE:", err)
		}
		if string(l2.Data()) != "x" {
			t.Errorf("kept data: %q", l2.Data())
		}
		if got, err := c.Get(name); err != nil || got.Owner() != l2.Owner() {
			t.Error("Get:", err)
		}
		if err := l2.Close(); err != nil {
			t.Error(err)
		}
	})
}
