package pglock_test

// Many goroutines at once. These tests are not parallel: each runs alone,
// with its pools bounded well under the test server's max_connections (200).

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

// Test1024Goroutines is the original's test of its issue 29: 1024 goroutines
// of one client take turns on one lock, and no serialization failure (40001)
// or deadlock (40P01) surfaces, nor is retried behind the caller's back.
func Test1024Goroutines(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			db := openDB(t, driver, roleApp, 40)
			logger := &testLogger{t: t, quiet: true}
			c, err := pglock.New(db, pglock.WithLevelLogger(logger),
				pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(0))
			if err != nil {
				t.Fatal(err)
			}
			name := lockName(t)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				errs     []error
				acquired atomic.Int64
			)
			for i := 0; i < 1024; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						// With the test's context, unlike the original's
						// Acquire: every goroutine stops in time.
						l, err := c.AcquireContext(ctx, name)
						if err == pglock.ErrNotAcquired && ctx.Err() != nil {
							return
						}
						if err == nil {
							acquired.Add(1)
							err = l.Close()
						}
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
							return
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("%d acquisitions", acquired.Load())
			for _, err := range errs {
				t.Error("error:", err)
				if s := sqlStateOf(err); s == "40001" || s == "40P01" {
					t.Error("serialization failure or deadlock surfaced:", err)
				}
			}
			for _, line := range logger.find("40001", "40P01", "could not serialize", "deadlock") {
				t.Error("retried behind the caller's back:", line)
			}
			if acquired.Load() == 0 {
				t.Error("no acquisitions")
			}
		})
	}
}

// Test100Clients is the original's parallel acquire: 100 clients on one pool,
// each taking turns on a random name with a holder of its own, holding it a
// random while, with heartbeats.
func Test100Clients(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			db := openDB(t, driver, roleApp, 60)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			prefix := lockName(t)
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				errs  []error
				turns atomic.Int64
			)
			fail := func(err error) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			for i := 0; i < 100; i++ {
				c, err := pglock.New(db, pglock.WithLevelLogger(&testLogger{t: t, quiet: true}),
					pglock.WithLeaseDuration(5*time.Second), pglock.WithHeartbeatFrequency(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				// Ten names for 100 clients: ten clients share each.
				name := fmt.Sprintf("%s-%d", prefix, rand.Intn(10))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						l, err := c.AcquireContext(ctx, name)
						if errors.Is(err, pglock.ErrNotAcquired) && ctx.Err() != nil {
							return
						}
						if err != nil {
							fail(fmt.Errorf("cannot grab the lock (%q): %w", name, err))
							return
						}
						turns.Add(1)
						select {
						case <-time.After(time.Duration(rand.Intn(100)) * time.Millisecond):
						case <-ctx.Done():
						}
						if err := c.ReleaseContext(context.Background(), l); err != nil {
							fail(fmt.Errorf("cannot release the lock (%q): %w", name, err))
							return
						}
						if ctx.Err() != nil {
							return
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("%d turns", turns.Load())
			for _, err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestManyNames is the original's stale-after-release test: 100 goroutines
// of one client hold 100 locks at once past a heartbeat period, all renewed,
// then release them.
func TestManyNames(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			db := openDB(t, driver, roleApp, 30)
			c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(300*time.Millisecond))
			ctx := testContext(t, 30*time.Second)
			prefix := lockName(t)
			start := make(chan struct{})
			errs := make(chan error, 100)
			var wg sync.WaitGroup
			for i := 0; i < 100; i++ {
				name := fmt.Sprint(prefix, "-", i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					l, err := c.AcquireContext(ctx, name)
					if err != nil {
						errs <- fmt.Errorf("cannot acquire lock (%q): %w", name, err)
						return
					}
					first := l.RecordVersionNumber()
					time.Sleep(time.Second)
					if l.RecordVersionNumber() == first || l.IsReleased() {
						errs <- fmt.Errorf("lock %q not renewed", name)
					}
					if err := l.Close(); err != nil {
						errs <- fmt.Errorf("cannot release lock (%q): %w", name, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestMutualExclusion counts the holders of one lock at every moment:
// 4 clients (two per driver, each its own pool and owner) with 4 goroutines
// each take turns, and never two hold it at once. The RVNs that successive
// holders get only grow: they are fencing tokens.
func TestMutualExclusion(t *testing.T) {
	requireServer(t)
	name := lockName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var (
		inside, maxInside, turns atomic.Int64
		tokensMu                 sync.Mutex
		lastToken                int64
		wg                       sync.WaitGroup
		mu                       sync.Mutex
		errs                     []string
	)
	for i := 0; i < 4; i++ {
		db := openDB(t, drivers[i%2], roleApp, 6)
		c := newClient(t, db, pglock.WithOwner(fmt.Sprint("client-", i)),
			pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					err := c.Do(ctx, name, func(ctx context.Context, l *pglock.Lock) error {
						n := inside.Add(1)
						defer inside.Add(-1)
						for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
						}
						tokensMu.Lock()
						if tok := l.RecordVersionNumber(); tok <= lastToken {
							errs = append(errs, fmt.Sprintf("token %d after %d", tok, lastToken))
						} else {
							lastToken = tok
						}
						tokensMu.Unlock()
						turns.Add(1)
						time.Sleep(time.Duration(rand.Intn(5)) * time.Millisecond)
						return nil
					})
					if err != nil && !(errors.Is(err, pglock.ErrNotAcquired) && ctx.Err() != nil) {
						mu.Lock()
						errs = append(errs, err.Error())
						mu.Unlock()
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d turns, at most %d inside at once", turns.Load(), maxInside.Load())
	if maxInside.Load() != 1 {
		t.Errorf("%d holders at once", maxInside.Load())
	}
	if turns.Load() < 16 {
		t.Errorf("only %d turns", turns.Load())
	}
	if len(errs) > 0 {
		t.Error(strings.Join(errs, "\n"))
	}
}
