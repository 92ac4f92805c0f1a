package pglock_test

// Takeovers: only after the holder's lease, of a holder that stopped
// renewing (a killed process, a holder without heartbeats).

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

// holderEnv makes the test binary a holder process (see runHolder):
// "driver|name|lease|period".
const holderEnv = "PGLOCK_GO_TEST_HOLDER"

// runHolder acquires a lock and keeps it with heartbeats, printing
// "rvn N" each time its RVN changes, until it is killed or its standard
// input closes (so that it never outlives a test that died).
func runHolder() int {
	parts := strings.Split(os.Getenv(holderEnv), "|")
	lease, _ := time.ParseDuration(parts[2])
	period, _ := time.ParseDuration(parts[3])
	db, err := sql.Open(parts[0], dsn(roleApp))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	db.SetMaxOpenConns(2)
	c, err := pglock.New(db, pglock.WithOwner(fmt.Sprint("holder-", os.Getpid())),
		pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(period))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	l, err := c.Acquire(parts[1])
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	var last int64
	for {
		if rvn := l.RecordVersionNumber(); rvn != last {
			fmt.Println("rvn", rvn)
			last = rvn
		}
		if l.IsReleased() {
			fmt.Println("lost")
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTakeoverOfKilledHolder(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		requireServer(t)
		const lease, period = 2 * time.Second, 300 * time.Millisecond
		name := lockName(t)
		ctx := testContext(t, 60*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%v|%v", holderEnv, driver, name, lease, period))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		lines := bufio.NewScanner(stdout)
		var rvns []int64
		for len(rvns) < 2 && lines.Scan() { // acquired, then renewed once
			f := strings.Fields(lines.Text())
			if len(f) != 2 || f[0] != "rvn" {
				t.Fatal("holder:", lines.Text())
			}
			n, _ := strconv.ParseInt(f[1], 10, 64)
			rvns = append(rvns, n)
		}
		if len(rvns) < 2 {
			t.Fatal("the holder did not acquire and renew its lock")
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()

		rival := newClient(t, openDB(t, driver, roleApp, 4), pglock.WithOwner("rival"),
			pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(period))
		type result struct {
			l   *pglock.Lock
			err error
		}
		got := make(chan result, 1)
		go func() {
			l, err := rival.AcquireContext(ctx, name)
			got <- result{l, err}
		}()
		// While the holder renews its lock, nobody takes it over.
		select {
		case r := <-got:
			t.Fatalf("taken over from a live holder: %v", r.err)
		case <-time.After(lease + lease/2):
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		time.Sleep(period) // a renewal the holder had in flight lands
		last, ok := lockRow(t, name)
		if !ok || !strings.HasPrefix(last.owner, "holder-") {
			t.Fatalf("before the takeover: %+v", last)
		}
		r := <-got
		if r.err != nil {
			t.Fatal("rival:", r.err)
		}
		defer r.l.Close()
		after, _ := lockRow(t, name)
		if after.owner != "rival" || after.rvn <= last.rvn || r.l.RecordVersionNumber() <= last.rvn {
			t.Errorf("after the takeover: %+v, rival's rvn %d, the holder's last %+v", after, r.l.RecordVersionNumber(), last)
		}
		// Not before the holder's lease, by the server's clock: its last
		// write, then the takeover.
		if gap := after.updatedAt.Sub(last.updatedAt); gap < lease {
			t.Errorf("taken over %v after the holder's last write, before its lease (%v)", gap, lease)
		}
	})
}

// TestFailIfLockedTakesOver: a holder without heartbeats dies (never renews);
// a FailIfLocked caller is refused while the lease runs, and a later try
// takes the lock over, not before the holder's lease.
func TestFailIfLockedTakesOver(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		const lease = time.Second
		holder := newClient(t, db, pglock.WithOwner("dead"), pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(0))
		rival := newClient(t, db, pglock.WithOwner("rival"), pglock.WithHeartbeatFrequency(0))
		name := lockName(t)
		if _, err := holder.Acquire(name); err != nil {
			t.Fatal(err)
		}
		before, _ := lockRow(t, name)
		ctx := testContext(t, 20*time.Second)
		tries := 0
		var l *pglock.Lock
		for l == nil {
			tries++
			got, err := rival.AcquireContext(ctx, name, pglock.FailIfLocked())
			switch {
			case err == nil:
				l = got
			case errors.Is(err, pglock.ErrNotAcquired) && ctx.Err() == nil:
				if got.Owner() != "dead" {
					t.Fatalf("refused by %q", got.Owner())
				}
				time.Sleep(100 * time.Millisecond)
			default:
				t.Fatal(err)
			}
		}
		defer l.Close()
		after, _ := lockRow(t, name)
		if tries < 2 || after.owner != "rival" {
			t.Errorf("after %d tries: %+v", tries, after)
		}
		if gap := after.updatedAt.Sub(before.updatedAt); gap < lease {
			t.Errorf("taken over %v after the holder's write, before its lease (%v)", gap, lease)
		}
	})
}

// TestWaitTakesOverAcrossCalls: the holder's lease (3 s) is longer than the
// waiter's calls in the server (a quarter of its own 1 s lease): the waiter
// remembers the RVN between calls and takes a dead holder's lock over.
func TestWaitTakesOverAcrossCalls(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 4)
		const lease = 3 * time.Second
		holder := newClient(t, db, pglock.WithOwner("dead"), pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(0))
		waiter := newClient(t, db, pglock.WithOwner("waiter"), pglock.WithLeaseDuration(time.Second),
			pglock.WithHeartbeatFrequency(200*time.Millisecond))
		name := lockName(t)
		if _, err := holder.Acquire(name); err != nil {
			t.Fatal(err)
		}
		before, _ := lockRow(t, name)
		l, err := waiter.AcquireContext(testContext(t, 20*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		after, _ := lockRow(t, name)
		if after.owner != "waiter" {
			t.Errorf("after: %+v", after)
		}
		if gap := after.updatedAt.Sub(before.updatedAt); gap < lease {
			t.Errorf("taken over %v after the holder's write, before its lease (%v)", gap, lease)
		}
		// And the lock so taken is renewed as usual.
		start := l.RecordVersionNumber()
		if !eventually(testContext(t, 5*time.Second), func() bool { return l.RecordVersionNumber() > start }) || l.IsReleased() {
			t.Error("lock taken over not renewed")
		}
	})
}

// TestTakeoverAcrossRoles: a dead holder of another role is taken over after
// its lease too (the server also checks that lease by its own clock), and
// its data does not pass to the new holder's role.
func TestTakeoverAcrossRoles(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		const lease = time.Second
		holder := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithOwner("dead"),
			pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(0))
		name := lockName(t)
		if _, err := holder.Acquire(name, pglock.WithData([]byte("secret"))); err != nil {
			t.Fatal(err)
		}
		before, _ := lockRow(t, name)
		logger := &testLogger{t: t}
		rival, err := pglock.New(openDB(t, driver, roleApp, 2), pglock.WithLevelLogger(logger), pglock.WithOwner("rival"),
			pglock.WithLeaseDuration(lease), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		l, err := rival.AcquireContext(testContext(t, 20*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		after, _ := lockRow(t, name)
		if after.owner != "rival" || after.holder != roleApp || l.Data() != nil {
			t.Errorf("after: %+v, data %q", after, l.Data())
		}
		if gap := after.updatedAt.Sub(before.updatedAt); gap < lease {
			t.Errorf("taken over %v after the holder's write, before its lease (%v)", gap, lease)
		}
	})
}
