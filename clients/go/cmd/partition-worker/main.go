// Command partition-worker is a worker for the fault tests (tests/partitions/
// in the repository): it takes locks with the Go client, works under them,
// writes what it did to a fenced store, and records every operation as one
// JSON line on stdout, for the history checker.
//
//	partition-worker CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED
//
// CONNINFO reaches the cluster (a libpq keyword/value string, e.g.
// "host=h1,h2,h3 port=... target_session_attrs=read-write"), STORE_CONNINFO the
// fenced store (a plain PostgreSQL with fenced_write), LOCKS is a
// comma-separated list of lock names. It runs for RUN_MS (or until SIGTERM),
// then releases what it holds and ends. It holds each lock for 0.2 to 1.2
// leases, or PGLOCK_WORKER_HOLD=LOW,HIGH leases. The lines are those of the Rust worker
// (clients/rust/examples/partition_worker.rs): start, acquire, renew, lost, write,
// release, stop; times are CLOCK_MONOTONIC seconds.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pglock/pglock/clients/go/pglock"
)

// mono is CLOCK_MONOTONIC in seconds: the clock of every history.
func mono() float64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

type history struct {
	client string
	out    *json.Encoder
}

func (h *history) emit(op string, fields map[string]any) {
	fields["client"] = h.client
	fields["op"] = op
	_ = h.out.Encode(fields)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: partition-worker CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED")
	os.Exit(2)
}

func millis(text string) time.Duration {
	n, err := strconv.ParseUint(text, 10, 63)
	if err != nil {
		usage()
	}
	return time.Duration(n) * time.Millisecond
}

func main() {
	if len(os.Args) != 9 {
		usage()
	}
	name, conninfo, storeInfo := os.Args[1], os.Args[2], os.Args[3]
	locks := strings.Split(os.Args[4], ",")
	lease, period, run := millis(os.Args[5]), millis(os.Args[6]), millis(os.Args[7])
	seed, err := strconv.ParseInt(os.Args[8], 10, 64)
	if err != nil {
		usage()
	}
	h := &history{client: name, out: json.NewEncoder(os.Stdout)}
	margin := min(period, lease/4)
	h.emit("start", map[string]any{"lang": "go", "lease": lease.Seconds(), "period": period.Seconds(),
		"margin": margin.Seconds(), "t": mono()})

	var stopping atomic.Bool
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; stopping.Store(true) }()
	end := mono() + run.Seconds()
	done := func() bool { return stopping.Load() || mono() >= end }

	db, err := sql.Open("pgx", conninfo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db.SetMaxOpenConns(8)
	store, err := sql.Open("pgx", storeInfo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	store.SetMaxOpenConns(2)
	c, err := pglock.New(db, pglock.WithOwner(name), pglock.WithLeaseDuration(lease),
		pglock.WithHeartbeatFrequency(period))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewSource(seed))
	var seq int64
	wait := max(lease/2, 500*time.Millisecond)
	// PGLOCK_WORKER_FIRST=K: the first lock tried is the K-th (the harness
	// lays out who holds what when its faults begin).
	first, errFirst := strconv.Atoi(os.Getenv("PGLOCK_WORKER_FIRST"))
	// After a failed acquire the worker asks for the same lock again (a job
	// that needs that lock): rivals keep watching its holder.
	again := ""
	for !done() {
		lock := locks[rng.Intn(len(locks))]
		if errFirst == nil {
			lock, errFirst = locks[first%len(locks)], errors.New("taken")
		} else if again != "" {
			lock = again
		}
		again = lock
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		invoke := mono()
		l, err := c.AcquireContext(ctx, lock, pglock.KeepOnRelease(),
			pglock.WithCustomHeartbeatContext(context.Background()))
		complete := mono()
		cancel()
		fields := map[string]any{"lock": lock, "invoke": invoke, "complete": complete}
		switch {
		case err == nil:
			fields["outcome"], fields["rvn"] = "ok", l.RecordVersionNumber()
			h.emit("acquire", fields)
			again = ""
			low, high := holdRange()
			hold(h, c, store, l, lock, lease.Seconds()*(low+(high-low)*rng.Float64()), &seq, done)
		case errors.Is(err, pglock.ErrNotAcquired):
			fields["outcome"] = "fail"
			h.emit("acquire", fields)
		default:
			fields["outcome"], fields["error"] = "unknown", err.Error()
			h.emit("acquire", fields)
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Intn(200)) * time.Millisecond)
	}
	h.emit("stop", map[string]any{"t": mono()})
}

// holdRange is how long to hold a lock, in leases: PGLOCK_WORKER_HOLD=LOW,HIGH
// (0.2 to 1.2 by default).
func holdRange() (float64, float64) {
	low, high, ok := strings.Cut(os.Getenv("PGLOCK_WORKER_HOLD"), ",")
	if !ok {
		return 0.2, 1.2
	}
	l, err1 := strconv.ParseFloat(low, 64)
	h, err2 := strconv.ParseFloat(high, 64)
	if err1 != nil || err2 != nil {
		return 0.2, 1.2
	}
	return l, h
}

// hold works under l for holdFor seconds (one fenced write every 100 to 300
// ms), then releases it keeping its row, unless it was lost first.
func hold(h *history, c *pglock.Client, store *sql.DB, l *pglock.Lock, lock string, holdFor float64,
	seq *int64, done func() bool) {
	// When the loss was seen: a goroutine looks every 2 ms, so that a write
	// in flight does not delay it.
	var lostAt atomic.Uint64
	watching := make(chan struct{})
	defer close(watching)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watching:
				return
			case <-tick.C:
				if l.IsReleased() {
					lostAt.CompareAndSwap(0, uint64(mono()*1e6))
					return
				}
			}
		}
	}()
	start := mono()
	rvn := l.RecordVersionNumber()
	for {
		now := mono()
		if l.IsReleased() {
			at := float64(lostAt.Load()) / 1e6
			if at == 0 {
				at = now
			}
			h.emit("lost", map[string]any{"lock": lock, "t": at, "reason": "released or lost (IsReleased)"})
			return
		}
		if r := l.RecordVersionNumber(); r != rvn {
			rvn = r
			h.emit("renew", map[string]any{"lock": lock, "t": now, "rvn": rvn})
		}
		if now-start >= holdFor || done() {
			break
		}
		*seq++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var accepted bool
		err := store.QueryRowContext(ctx, "SELECT fenced_write($1::text, $2::bigint, $3::text, $4::bigint)",
			lock, rvn, h.client, *seq).Scan(&accepted)
		cancel()
		outcome := "unknown"
		if err == nil && accepted {
			outcome = "ok"
		} else if err == nil {
			outcome = "fail"
		}
		h.emit("write", map[string]any{"lock": lock, "invoke": now, "complete": mono(), "outcome": outcome,
			"token": rvn, "seq": *seq})
		pause := time.Duration(100+rand.Intn(200)) * time.Millisecond
		for until := time.Now().Add(pause); time.Now().Before(until) && !l.IsReleased(); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	invoke := mono()
	presented := l.RecordVersionNumber()
	err := c.Release(l)
	outcome := "ok"
	fields := map[string]any{"lock": lock, "invoke": invoke, "rvn": presented}
	switch {
	case errors.Is(err, pglock.ErrLockAlreadyReleased):
		outcome = "fail"
	case err != nil:
		outcome, fields["error"] = "unknown", err.Error()
	}
	fields["complete"], fields["outcome"] = mono(), outcome
	h.emit("release", fields)
}
