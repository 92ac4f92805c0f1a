package pglock_test

// Waiting and fencing: releases seen, long waits, statement_timeout, SERIALIZABLE roles, Fence.

import (
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

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
