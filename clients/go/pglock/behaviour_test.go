package pglock_test

// cirello.io/pglock's documented behaviours, one by one, with both drivers.

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return nil, errors.New("fake") }

func init() { sql.Register("pglock-fake", fakeDriver{}) }

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := pglock.New(nil); !errors.Is(err, pglock.ErrNotPostgreSQLDriver) {
		t.Error("New(nil):", err)
	}
	if _, err := pglock.UnsafeNew(nil); !errors.Is(err, pglock.ErrNotPostgreSQLDriver) {
		t.Error("UnsafeNew(nil):", err)
	}
	fake, err := sql.Open("pglock-fake", "")
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	if _, err := pglock.New(fake); !errors.Is(err, pglock.ErrNotPostgreSQLDriver) {
		t.Error("New with another driver:", err)
	}
	if _, err := pglock.UnsafeNew(fake); err != nil {
		t.Error("UnsafeNew with another driver:", err)
	}
	// The lease must be at least twice the heartbeat period.
	for _, opts := range [][]pglock.ClientOption{
		{pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(time.Second)},
		{pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(501 * time.Millisecond)},
		{pglock.WithLeaseDuration(0), pglock.WithHeartbeatFrequency(0)},
		{pglock.WithLeaseDuration(-time.Second)},
	} {
		if _, err := pglock.UnsafeNew(fake, opts...); !errors.Is(err, pglock.ErrDurationTooSmall) {
			t.Error("expected ErrDurationTooSmall, got", err)
		}
	}
	for _, opts := range [][]pglock.ClientOption{
		{pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(500 * time.Millisecond)},
		{pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(0)},
		{pglock.WithLeaseDuration(time.Second), pglock.WithHeartbeatFrequency(-1)},
		{pglock.WithLeaseDuration(24 * time.Hour)},
		{pglock.WithOwner(string(bytes.Repeat([]byte("é"), 255)))},
	} {
		if _, err := pglock.UnsafeNew(fake, opts...); err != nil {
			t.Error("unexpected error:", err)
		}
	}
	if _, err := pglock.UnsafeNew(fake, pglock.WithLeaseDuration(25*time.Hour)); !errors.Is(err, pglock.ErrDurationTooLarge) {
		t.Error("expected ErrDurationTooLarge, got", err)
	}
	for _, owner := range []string{"", string(bytes.Repeat([]byte("x"), 256))} {
		if _, err := pglock.UnsafeNew(fake, pglock.WithOwner(owner)); !errors.Is(err, pglock.ErrInvalidOwner) {
			t.Errorf("owner of %d bytes: expected ErrInvalidOwner, got %v", len(owner), err)
		}
	}
	// Both drivers pass New's check.
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 2)
		if _, err := pglock.New(db, pglock.WithLogger(printLogger{t})); err != nil {
			t.Error(err)
		}
	})
}

func TestCreateTable(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 2))
		// Both are no-ops once the extension is there, however often.
		for i := 0; i < 2; i++ {
			if err := c.CreateTable(); err != nil {
				t.Error("CreateTable:", err)
			}
			if err := c.TryCreateTable(); err != nil {
				t.Error("TryCreateTable:", err)
			}
		}
		// A role outside pglock_user is told what to grant.
		outsider := newClient(t, openDB(t, driver, roleOutsider, 2))
		err := outsider.CreateTable()
		if !errors.Is(err, pglock.ErrExtensionNotInstalled) || !contains(err, "GRANT pglock_user TO") {
			t.Error("outsider:", err)
		}
	})
	t.Run("database without the extension", func(t *testing.T) {
		t.Parallel()
		dbname := "pglock_go_noext_" + lockName(t)[len(t.Name())+1:]
		admin(t, "CREATE DATABASE "+dbname)
		t.Cleanup(func() { admin(t, "DROP DATABASE "+dbname+" WITH (FORCE)") })
		open := func(user string) *sql.DB {
			db, err := sql.Open("postgres", dsnFor(getenv("PGHOST"), getenv("PGPORT"), user, dbname))
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(2)
			t.Cleanup(func() { db.Close() })
			return db
		}
		app := newClient(t, open(roleApp))
		err := app.TryCreateTable()
		if !errors.Is(err, pglock.ErrExtensionNotInstalled) || !contains(err, "CREATE EXTENSION pglock") {
			t.Fatal("app without the extension:", err)
		}
		if _, err := app.Acquire(lockName(t), pglock.FailIfLocked()); err == nil {
			t.Fatal("acquired without the extension")
		}
		if err := app.DropTable(); err == nil {
			t.Error("DropTable without the extension did not fail")
		}
		// A superuser's CreateTable creates it, as the original's makes
		// its table.
		if err := newClient(t, open(superuser())).CreateTable(); err != nil {
			t.Fatal("superuser's CreateTable:", err)
		}
		if err := app.TryCreateTable(); err != nil {
			t.Fatal("after CREATE EXTENSION:", err)
		}
		l, err := app.Acquire(lockName(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFailIfLocked(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		name := lockName(t)
		holder := newClient(t, db, pglock.WithOwner("holder"),
			pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(time.Second))
		l, err := holder.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		rival := newClient(t, db, pglock.WithOwner("rival"))
		refused, err := rival.Acquire(name, pglock.FailIfLocked())
		if !errors.Is(err, pglock.ErrNotAcquired) {
			t.Fatal("expected ErrNotAcquired, got", err)
		}
		// The lock returned shows the holder, and releasing it does
		// nothing to the holder's lock.
		if refused.Owner() != "holder" || refused.RecordVersionNumber() != l.RecordVersionNumber() || !refused.IsReleased() {
			t.Errorf("refused lock: owner %q rvn %d released %v; holder's rvn %d",
				refused.Owner(), refused.RecordVersionNumber(), refused.IsReleased(), l.RecordVersionNumber())
		}
		if err := refused.Close(); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
			t.Error("releasing the refused lock:", err)
		}
		if got, err := rival.Get(name); err != nil || got.Owner() != "holder" {
			t.Errorf("after the refusal: %v %v", got.Owner(), err)
		}
		// Do with FailIfLocked does not run f.
		err = rival.Do(context.Background(), name, func(context.Context, *pglock.Lock) error {
			return errors.New("should not have been executed")
		}, pglock.FailIfLocked())
		if !errors.Is(err, pglock.ErrNotAcquired) {
			t.Error("Do with FailIfLocked:", err)
		}
	})
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 2))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if l, err := c.AcquireContext(ctx, lockName(t)); err != pglock.ErrNotAcquired || l != nil {
			t.Error("a canceled context acquired:", l, err)
		}
		if err := c.Do(ctx, lockName(t), func(context.Context, *pglock.Lock) error { return nil }); err != pglock.ErrNotAcquired {
			t.Error("Do with a canceled context:", err)
		}
		// A context that ends while waiting.
		name := lockName(t)
		l, err := c.Acquire(name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := c.AcquireContext(ctx, name); err != pglock.ErrNotAcquired {
			t.Error("a wait that ran out:", err)
		}
	})
}

func TestKeepOnRelease(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 4),
			pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(time.Second))
		name := lockName(t)
		l, err := c.Acquire(name, pglock.KeepOnRelease(), pglock.WithData([]byte("42")))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// The entry stays, released, with its data...
		got, err := c.Get(name)
		if err != nil || !bytes.Equal(got.Data(), []byte("42")) {
			t.Fatalf("kept lock: %q %v", got.Data(), err)
		}
		if row, ok := lockRow(t, name); !ok || !row.released {
			t.Fatalf("kept lock's row: %+v %v", row, ok)
		}
		// ...for the next holder, who takes it at once.
		l2, err := c.AcquireContext(testContext(t, 10*time.Second), name, pglock.FailIfLocked())
		if err != nil {
			t.Fatal("reacquire a kept lock:", err)
		}
		if !bytes.Equal(l2.Data(), []byte("42")) {
			t.Errorf("lock content lost: %q", l2.Data())
		}
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		// Without KeepOnRelease the entry goes.
		if _, err := c.Get(name); !errors.Is(err, pglock.ErrLockNotFound) {
			t.Error("released lock still there:", err)
		}
	})
}

func TestLockData(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		c := newClient(t, openDB(t, driver, roleApp, 4), pglock.WithHeartbeatFrequency(0))
		ctx := testContext(t, 20*time.Second)
		acquire := func(name string, opts ...pglock.LockOption) *pglock.Lock {
			t.Helper()
			l, err := c.AcquireContext(ctx, name, opts...)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		release := func(l *pglock.Lock) {
			t.Helper()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string, l *pglock.Lock, want []byte) {
			t.Helper()
			if !bytes.Equal(l.Data(), want) {
				t.Errorf("%s: lock has %q, want %q", what, l.Data(), want)
			}
			got, err := c.GetData(l.Name())
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: GetData gives %q (%v), want %q", what, got, err, want)
			}
		}

		// WithData creates the lock with data.
		name := lockName(t)
		l := acquire(name, pglock.WithData([]byte("original")), pglock.KeepOnRelease())
		check("new lock", l, []byte("original"))
		release(l)
		// A kept lock keeps its data against WithData...
		l = acquire(name, pglock.WithData([]byte("other")), pglock.KeepOnRelease())
		check("kept, WithData", l, []byte("original"))
		release(l)
		// ...and without data given.
		l = acquire(name, pglock.KeepOnRelease())
		check("kept, no data", l, []byte("original"))
		release(l)
		// ReplaceData replaces it.
		l = acquire(name, pglock.WithData([]byte("42")), pglock.ReplaceData(), pglock.KeepOnRelease())
		check("kept, ReplaceData", l, []byte("42"))
		release(l)
		// ReplaceData without data clears it.
		l = acquire(name, pglock.ReplaceData(), pglock.KeepOnRelease())
		check("kept, ReplaceData without data", l, nil)
		release(l)
		// A lock without data gets WithData's.
		l = acquire(name, pglock.WithData([]byte("again")))
		check("kept without data, WithData", l, []byte("again"))
		release(l)
		// Released without KeepOnRelease, nothing is left for the next.
		l = acquire(name)
		check("deleted, no data", l, nil)
		release(l)
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		c := newClient(t, db, pglock.WithOwner("custom-owner"), pglock.WithCustomTable("TestGet"))
		name := lockName(t)
		l, err := c.Acquire(name, pglock.WithData([]byte("42")))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		got, err := c.Get(name)
		switch {
		case err != nil:
			t.Fatal("Get:", err)
		case !bytes.Equal(got.Data(), []byte("42")), got.Owner() != "custom-owner",
			got.RecordVersionNumber() != l.RecordVersionNumber(), got.Name() != name:
			t.Errorf("Get: %q %q %d %q", got.Data(), got.Owner(), got.RecordVersionNumber(), got.Name())
		case !got.IsReleased():
			t.Error("a lock read with Get is not held")
		}
		// It cannot be used to release or renew the holder's lock.
		if err := c.Release(got); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
			t.Error("Release of a lock read:", err)
		}
		if err := c.SendHeartbeat(context.Background(), got); !errors.Is(err, pglock.ErrLockAlreadyReleased) {
			t.Error("SendHeartbeat of a lock read:", err)
		}
		if _, err := c.Get(name); err != nil {
			t.Error("lock gone after misuse:", err)
		}
		// Unknown names.
		for _, get := range []func() error{
			func() error { _, err := c.GetData("lock-404"); return err },
			func() error { _, err := c.Get("lock-404"); return err },
		} {
			err := get()
			var notExist *pglock.NotExistError
			if !errors.As(err, &notExist) || !errors.Is(err, pglock.ErrLockNotFound) {
				t.Error("unknown lock:", err)
			}
		}
		// Another role sees the lock but not its data.
		other := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithCustomTable("TestGet"))
		got, err = other.Get(name)
		if err != nil || got.Owner() != "custom-owner" || got.Data() != nil {
			t.Errorf("another role's Get: %q %q %v", got.Owner(), got.Data(), err)
		}
	})
}

func TestDo(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 6)
		newDo := func(opts ...pglock.ClientOption) *pglock.Client {
			return newClient(t, db, append([]pglock.ClientOption{
				pglock.WithLeaseDuration(3 * time.Second), pglock.WithHeartbeatFrequency(300 * time.Millisecond)}, opts...)...)
		}
		t.Run("lost lock", func(t *testing.T) {
			t.Parallel()
			c := newDo()
			name := lockName(t)
			ranOnce := make(chan *pglock.Lock)
			done := make(chan error, 1)
			go func() {
				done <- c.Do(testContext(t, 20*time.Second), name, func(ctx context.Context, l *pglock.Lock) error {
					ranOnce <- l
					<-ctx.Done()
					return ctx.Err()
				})
			}()
			l := <-ranOnce
			// An operator removes the lock: the next heartbeat finds it
			// gone, and f's context is canceled.
			admin(t, "SELECT pglock_force_release($1)", name)
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatal("Do:", err)
			}
			if !l.IsReleased() {
				t.Error("lost lock not marked released")
			}
		})
		t.Run("renewals blocked", func(t *testing.T) {
			t.Parallel()
			// The lock's renewals wait behind a transaction that fences
			// it, fail, are retried, and at renewed + lease - margin the
			// lock is lost: f's context is canceled while the server
			// still has the lock at the holder's RVN (no rival could
			// have taken it over yet).
			c := newDo()
			name := lockName(t)
			fencer := openDB(t, driver, roleApp, 1)
			err := c.Do(testContext(t, 20*time.Second), name, func(ctx context.Context, l *pglock.Lock) error {
				tx, err := fencer.BeginTx(context.Background(), nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				token, err := l.Fence(context.Background(), tx)
				if err != nil {
					return err
				}
				<-ctx.Done()
				if row, ok := lockRow(t, name); !ok || row.rvn != token || row.owner != l.Owner() {
					t.Errorf("lost after the lock changed in the server: %+v, fenced at %d", row, token)
				}
				if !l.IsReleased() {
					t.Error("lost lock not marked released")
				}
				return ctx.Err()
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatal("Do:", err)
			}
		})
		t.Run("normally completed", func(t *testing.T) {
			t.Parallel()
			c := newDo()
			name := lockName(t)
			ran := false
			err := c.Do(testContext(t, 20*time.Second), name, func(ctx context.Context, l *pglock.Lock) error {
				start := l.RecordVersionNumber()
				ok := eventually(ctx, func() bool { return l.RecordVersionNumber() > start })
				ran = ok && ctx.Err() == nil
				return nil
			})
			if err != nil || !ran {
				t.Fatal("Do:", err, ran)
			}
			if _, err := c.Get(name); !errors.Is(err, pglock.ErrLockNotFound) {
				t.Error("Do did not release the lock:", err)
			}
		})
		t.Run("canceled heartbeat context", func(t *testing.T) {
			t.Parallel()
			c := newDo()
			hb, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := c.Do(testContext(t, 20*time.Second), lockName(t), func(ctx context.Context, _ *pglock.Lock) error {
				<-ctx.Done()
				return ctx.Err()
			}, pglock.WithCustomHeartbeatContext(hb))
			if !errors.Is(err, context.Canceled) {
				t.Error("Do:", err)
			}
		})
		t.Run("error of f", func(t *testing.T) {
			t.Parallel()
			c := newDo()
			name := lockName(t)
			want := errors.New("f failed")
			if err := c.Do(testContext(t, 20*time.Second), name, func(context.Context, *pglock.Lock) error { return want }); err != want {
				t.Error("Do:", err)
			}
			if _, err := c.Get(name); !errors.Is(err, pglock.ErrLockNotFound) {
				t.Error("Do did not release the lock:", err)
			}
		})
	})
}
