package pglock_test

// Heartbeats that survive broken connections and a server restart
// (cirello.io/pglock #18, #40), a lock lost when the server stays away, and a
// canceled wait that ends in the server too.

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

// openTagged opens a pool whose connections carry an application_name of
// their own, so that a test can find (and terminate) exactly its backends.
func openTagged(t *testing.T, driver, role string, maxConns int) (*sql.DB, string) {
	t.Helper()
	requireServer(t)
	tag := "pglock-go-" + lockName(t)[len(t.Name())+1:]
	db, err := sql.Open(driver, dsn(role)+" application_name="+tag)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxConns)
	t.Cleanup(func() { db.Close() })
	return db, tag
}

// TestHeartbeatsSurviveBrokenConnections terminates every connection of a
// client's pool, three times, while it holds locks: the renewals fail, are
// retried on new connections, and no lock is lost.
func TestHeartbeatsSurviveBrokenConnections(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db, tag := openTagged(t, driver, roleApp, 4)
		c := newClient(t, db, pglock.WithLeaseDuration(3*time.Second), pglock.WithHeartbeatFrequency(300*time.Millisecond))
		ctx := testContext(t, 30*time.Second)
		var locks []*pglock.Lock
		for i := 0; i < 3; i++ {
			l, err := c.AcquireContext(ctx, lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			locks = append(locks, l)
		}
		for round := 0; round < 3; round++ {
			var n int
			if err := adminDB(t).QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE application_name = $1`, tag).Scan(&n); err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: terminated %d connections", round, n)
			for i, l := range locks {
				start := l.RecordVersionNumber()
				if !eventually(ctx, func() bool { return l.RecordVersionNumber() > start || l.IsReleased() }) || l.IsReleased() {
					t.Fatalf("round %d: lock %d lost (or not renewed)", round, i)
				}
			}
		}
		for _, l := range locks {
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}
	})
}

// TestHeartbeatsSurviveRestart restarts the server while the client holds a
// lock: within the lease, the lock is renewed on the restarted server and
// kept.
func TestHeartbeatsSurviveRestart(t *testing.T) {
	t.Parallel()
	for i, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			srv := startOwnServer(t, 55521+i)
			db, err := sql.Open(driver, srv.dsn(roleApp, "pglock_test"))
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(4)
			t.Cleanup(func() { db.Close() })
			c := newClient(t, db, pglock.WithLeaseDuration(10*time.Second), pglock.WithHeartbeatFrequency(time.Second))
			ctx := testContext(t, 60*time.Second)
			l, err := c.AcquireContext(ctx, lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			before := l.RecordVersionNumber()
			srv.stop()
			time.Sleep(1500 * time.Millisecond) // renewals fail meanwhile
			srv.start()
			if !eventually(ctx, func() bool { return l.RecordVersionNumber() > before || l.IsReleased() }) || l.IsReleased() {
				t.Fatal("lock lost across the restart")
			}
			if err := l.Close(); err != nil {
				t.Fatal("release after the restart:", err)
			}
			// The restarted server goes on with larger RVNs.
			l2, err := c.AcquireContext(ctx, lockName(t))
			if err != nil {
				t.Fatal(err)
			}
			if l2.RecordVersionNumber() <= before {
				t.Errorf("rvn %d after %d", l2.RecordVersionNumber(), before)
			}
			l2.Close()
		})
	}
}

// TestLostWhenServerStaysAway: the server is down past the lease: the lock
// is reported lost (Do's context canceled), not held on to.
func TestLostWhenServerStaysAway(t *testing.T) {
	t.Parallel()
	srv := startOwnServer(t, 55523)
	db, err := sql.Open("postgres", srv.dsn(roleApp, "pglock_test"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(400*time.Millisecond))
	ctx := testContext(t, 30*time.Second)
	var lock *pglock.Lock
	err = c.Do(ctx, lockName(t), func(ctx context.Context, l *pglock.Lock) error {
		lock = l
		srv.stop()
		stopped := time.Now()
		<-ctx.Done()
		t.Logf("lost %v after the server stopped", time.Since(stopped))
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatal("Do:", err)
	}
	if !lock.IsReleased() {
		t.Error("lost lock not marked released")
	}
}

// TestCanceledWaitEndsInServer: a context that ends while the client waits
// in the server cancels the server's wait too, before its wait_timeout
// (10 s) would have ended it.
func TestCanceledWaitEndsInServer(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db, tag := openTagged(t, driver, roleApp, 4)
		holder := newClient(t, openDB(t, driver, roleApp, 2), pglock.WithLeaseDuration(60*time.Second), pglock.WithHeartbeatFrequency(0))
		waiter := newClient(t, db, pglock.WithLeaseDuration(60*time.Second), pglock.WithHeartbeatFrequency(0))
		name := lockName(t)
		l, err := holder.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		waiting := func() int {
			var n int
			if err := adminDB(t).QueryRow(`SELECT count(*) FROM pg_stat_activity
 WHERE application_name = $1 AND state = 'active' AND query LIKE '%pglock_acquire_wait%'`, tag).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := waiter.AcquireContext(ctx, name)
			done <- err
		}()
		if !eventually(testContext(t, 10*time.Second), func() bool { return waiting() == 1 }) {
			t.Fatal("the waiter is not waiting in the server")
		}
		cancel()
		canceled := time.Now()
		if err := <-done; err != pglock.ErrNotAcquired {
			t.Fatal("canceled wait:", err)
		}
		if !eventually(testContext(t, 8*time.Second), func() bool { return waiting() == 0 }) {
			t.Fatal("the wait goes on in the server after its context ended")
		}
		t.Logf("the server's wait ended %v after the cancel", time.Since(canceled))
	})
}
