package pglock_test

// Heartbeats: contexts, SendHeartbeat, lost locks, owners, one call per period.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
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

// TestWaitSeesRelease: a waiting acquire gets the lock when its holder
// releases it, long before the holder's lease (60 s) could run out.
// TestLongWaitKeepsLease: a wait in the server longer than the waiter's own
// lease (1 s) ends with a lock that is not lost at once: the client renews
// it before returning it, so its lease counts from then.
// TestStatementTimeout: a role whose statement_timeout (300 ms) is shorter
// than the client's waits in the server still waits, in shorter calls, and
// gets the lock when it is released.
// TestSerializableDefault: a role whose transactions default to
// SERIALIZABLE (where pglock refuses to wait) waits all the same, in READ
// COMMITTED transactions of the client's own, and the rest works as usual.
