package pglock

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"sync"
	"time"
)

// renewer renews every lock of a client that has heartbeats: one goroutine
// per client, running while the client holds such a lock, sends one
// pglock_heartbeat_many per period for all the locks due. See the package
// documentation ("Heartbeats and lost locks") for its timing.
type renewer struct {
	c       *Client
	mu      sync.Mutex
	locks   map[*Lock]struct{}
	running bool
	wake    chan struct{} // buffered(1): something changed, look again
}

// startHeartbeat hands a lock just acquired to the renewer, if the client
// has heartbeats.
func (c *Client) startHeartbeat(l *Lock) {
	if c.heartbeatFrequency <= 0 {
		return
	}
	r := &c.renewer
	l.mu.Lock()
	l.registered = true
	l.deadline = time.AfterFunc(time.Until(l.lossDeadline()), func() { r.deadlinePassed(l) })
	l.mu.Unlock()
	r.mu.Lock()
	if r.locks == nil {
		r.locks = make(map[*Lock]struct{})
		r.wake = make(chan struct{}, 1)
	}
	r.locks[l] = struct{}{}
	if !r.running {
		r.running = true
		go r.run()
	}
	r.mu.Unlock()
	// After it is in the map: a heartbeat context already done removes it
	// at once.
	stop := context.AfterFunc(l.heartbeatContext, func() { r.remove(l) })
	l.mu.Lock()
	l.stopWatch = stop
	l.mu.Unlock()
	r.poke()
}

// remove stops renewing l (idempotent).
func (r *renewer) remove(l *Lock) {
	r.mu.Lock()
	delete(r.locks, l)
	r.mu.Unlock()
	l.mu.Lock()
	l.registered = false
	if l.deadline != nil {
		l.deadline.Stop()
	}
	stop := l.stopWatch
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
	r.poke()
}

func (r *renewer) poke() {
	r.mu.Lock()
	wake := r.wake
	r.mu.Unlock()
	if wake == nil {
		return
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

// deadlinePassed runs when l's loss deadline timer fires: unless a renewal
// moved the deadline meanwhile, the lock is lost.
func (r *renewer) deadlinePassed(l *Lock) {
	l.mu.Lock()
	if !l.registered || l.isReleased {
		l.mu.Unlock()
		return
	}
	if left := time.Until(l.lossDeadline()); left > 0 {
		l.deadline.Reset(left)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	r.c.lose(l, fmt.Sprintf("no heartbeat succeeded within lease - margin (%v)", l.leaseDuration-min(r.c.period(), l.leaseDuration/4)), false)
}

type dueLock struct {
	l   *Lock
	due time.Time
}

func (r *renewer) run() {
	c := r.c
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		period := c.period()
		now := time.Now()
		r.mu.Lock()
		if len(r.locks) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		due := make([]dueLock, 0, len(r.locks))
		for l := range r.locks {
			l.mu.Lock()
			d := l.renewed.Add(period)
			if l.retryAt.After(d) {
				d = l.retryAt
			}
			l.mu.Unlock()
			due = append(due, dueLock{l, d})
		}
		wake := r.wake
		r.mu.Unlock()
		sort.Slice(due, func(i, j int) bool { return due[i].due.Before(due[j].due) })
		if wait := due[0].due.Sub(now); wait > 0 {
			timer.Reset(wait) // Go 1.23 timers: no stale tick to drain
			select {
			case <-timer.C:
			case <-wake:
				timer.Stop()
			}
			continue
		}
		// The earliest is due: renew it with every lock due within half a
		// period, early rather than late, so that locks fall into step.
		var batch []*Lock
		for _, d := range due {
			if d.due.After(now.Add(period/2)) || len(batch) == maxBatch {
				break
			}
			if !d.l.op.TryLock() {
				// Busy with SendHeartbeat, a release or a fence:
				// look again shortly.
				d.l.mu.Lock()
				d.l.retryAt = now.Add(c.retryInterval())
				d.l.mu.Unlock()
				continue
			}
			batch = append(batch, d.l)
		}
		if len(batch) > 0 {
			c.renewBatch(batch)
			for _, l := range batch {
				l.op.Unlock()
			}
		}
	}
}

// renewBatch renews locks whose op mutex the caller holds, in one
// pglock_heartbeat_many call.
func (c *Client) renewBatch(batch []*Lock) {
	now := time.Now()
	var latest time.Time
	locks := make([]*Lock, 0, len(batch))
	names := make([]string, 0, len(batch))
	rvns := make([]int64, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, l := range batch {
		l.mu.Lock()
		ok := l.registered && l.held && !l.isReleased && !seen[l.full]
		rvn, deadline := l.recordVersionNumber, l.lossDeadline()
		if !ok {
			// Being removed, or the same name twice (a lock lost and
			// taken again): look again shortly.
			l.retryAt = now.Add(c.retryInterval())
		}
		l.mu.Unlock()
		if !ok {
			continue
		}
		seen[l.full] = true
		locks = append(locks, l)
		names = append(names, l.full)
		rvns = append(rvns, rvn)
		if deadline.After(latest) {
			latest = deadline
		}
	}
	if len(locks) == 0 {
		return
	}
	// The call is abandoned (and canceled in the server by the driver)
	// after a period (at least a quarter of the lease), or at the latest
	// deadline of its locks; a lock whose deadline comes first is lost by
	// its own timer meanwhile. A call abandoned too late may still have
	// renewed the locks in the server, with RVNs we never learn: they are
	// then lost at the next call, which is the safe reading.
	timeout := min(max(c.period(), c.leaseDuration/4), latest.Sub(now))
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Millisecond))
	defer cancel()
	sent := time.Now()
	type result struct {
		rvn     sql.NullInt64
		renewed bool
	}
	results := make([]result, 0, len(locks))
	err := func() error {
		rows, err := c.db.QueryContext(ctx, sqlHeartbeatMany, c.owner, textArray(names), int64Array(rvns),
			micros(c.leaseDuration))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var res result
			if err := rows.Scan(&res.rvn, &res.renewed); err != nil {
				return err
			}
			results = append(results, res)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(results) != len(locks) {
			return fmt.Errorf("pglock_heartbeat_many returned %d rows for %d locks", len(results), len(locks))
		}
		return nil
	}()
	if err != nil {
		// Transient, whatever it is: retry until the deadline says lost.
		c.log.Debug("heartbeat of %d locks failed, retrying: %v", len(locks), err)
		retryAt := time.Now().Add(c.retryInterval())
		for _, l := range locks {
			l.mu.Lock()
			l.retryAt = retryAt
			l.mu.Unlock()
		}
		return
	}
	for i, l := range locks {
		res := results[i]
		if res.renewed && res.rvn.Valid {
			l.mu.Lock()
			if !l.isReleased {
				l.renewedAt(res.rvn.Int64, sent)
			} else if l.held {
				// Lost at its deadline while the call was out: still
				// lost, but a release now frees it with this RVN.
				l.recordVersionNumber = res.rvn.Int64
			}
			l.mu.Unlock()
			continue
		}
		c.lose(l, fmt.Sprintf("the server did not renew it at rvn %d (taken over, released or removed; call of %v for %d locks)", rvns[i], time.Since(sent), len(locks)), true)
	}
	c.log.Debug("renewed %d locks", len(locks))
}
