package pglock

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Lock is a lock of the client: one it holds (from Acquire, AcquireContext or
// Do), one it tried to take (the holder's, returned with ErrNotAcquired by
// FailIfLocked), or one it read (Get).
type Lock struct {
	client           *Client
	name             string // as the caller named it
	full             string // the name in pglock: the namespace's prefix and name
	leaseDuration    time.Duration
	heartbeatContext context.Context
	heartbeatCancel  context.CancelFunc

	replaceData   bool
	data          []byte
	failIfLocked  bool
	keepOnRelease bool

	// op serialises the writes of this lock: a renewal, SendHeartbeat,
	// a release, a fence. The renewer only tries it, and skips a lock that
	// is busy until its next round.
	op sync.Mutex

	mu                  sync.Mutex // guards everything below
	owner               string
	recordVersionNumber int64
	isReleased          bool // released, lost, or never held
	held                bool // acquired, and neither released nor known lost in the server
	lostReason          string
	renewed             time.Time // just before the request of the last acquire or renewal was sent
	retryAt             time.Time // after a failed renewal, not before
	deadline            *time.Timer
	stopWatch           func() bool // stops watching heartbeatContext
	registered          bool        // renewed by the client's renewer
}

// Name returns the lock's name, as given to Acquire (without the namespace of
// WithCustomTable).
func (l *Lock) Name() string { return l.name }

// Data returns the content of the lock, if any is available: for a lock
// acquired, the data it had or was given; for a lock read with Get, its
// data, or nil when another role holds it (pglock shows a lock's data only to
// its holder's role).
func (l *Lock) Data() []byte {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.data
}

// Close releases the lock and stops its heartbeats (Client.Release).
func (l *Lock) Close() error {
	return l.client.Release(l)
}

// IsReleased tells whether the lock is released, lost (not renewed in time,
// taken over, or removed by an operator), or was never held by this client.
func (l *Lock) IsReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isReleased
}

// Owner returns who owns the lock: this client's owner label for a lock it
// holds, the holder's for a lock refused or read.
func (l *Lock) Owner() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owner
}

// RecordVersionNumber returns the lock's record version number (RVN) as the
// client last saw it: it changes with every write of the lock (acquire,
// heartbeat, release with KeepOnRelease) and only grows, so the RVN of a lock
// held is a fencing token (see Fence). A heartbeat with an RVN that is no
// longer the lock's fails: the lock was lost.
func (l *Lock) RecordVersionNumber() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recordVersionNumber
}

// Fence makes the writes of tx conditional on holding the lock: it calls
// pglock_fence in tx, which fails (and so aborts tx) unless the client holds
// the lock at its current RVN, and which keeps any other transaction's
// takeover, heartbeat or release of the lock from committing before tx ends.
// Call it first in tx, before the writes it protects; it returns the RVN, the
// fencing token of tx's writes.
//
// A lock found lost is marked so (IsReleased, the heartbeat context is
// canceled) and the error wraps ErrLockAlreadyReleased. Until tx ends, the
// client's renewal of its locks waits for it: keep fenced transactions well
// under a heartbeat period.
func (l *Lock) Fence(ctx context.Context, tx *sql.Tx) (int64, error) {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	held, released, owner, rvn := l.held, l.isReleased, l.owner, l.recordVersionNumber
	l.mu.Unlock()
	if !held || released {
		return 0, ErrLockAlreadyReleased
	}
	var token int64
	err := tx.QueryRowContext(ctx, sqlFence, l.full, owner, rvn).Scan(&token)
	if err != nil {
		if s := sqlState(err); s == stateNotHeld || s == stateOtherRole {
			l.client.lose(l, "the fence found it not held: "+err.Error(), true)
			return 0, fmt.Errorf("cannot fence (%v): %w: %w", l.name, ErrLockAlreadyReleased, err)
		}
		return 0, typedError(err, "cannot fence the lock")
	}
	return token, nil
}

// renewedAt records a successful acquire or renewal whose request was sent at
// sent. The caller holds l.mu.
func (l *Lock) renewedAt(rvn int64, sent time.Time) {
	l.recordVersionNumber = rvn
	l.renewed = sent
	l.retryAt = time.Time{}
	if l.deadline != nil {
		l.deadline.Reset(time.Until(l.lossDeadline()))
	}
}

// lossDeadline is when the lock is lost if no renewal succeeds before:
// renewed + lease - margin, margin = min(period, lease/4). The caller holds
// l.mu.
func (l *Lock) lossDeadline() time.Time {
	c := l.client
	margin := min(c.period(), l.leaseDuration/4)
	return l.renewed.Add(l.leaseDuration - margin)
}

// LockOption reconfigures how the lock behaves on acquire and release.
type LockOption func(*Lock)

// WithCustomHeartbeatContext sets the context of the lock's heartbeats:
// once ctx is done, the lock is no longer renewed (it stays held until its
// lease runs out or it is released). By default the heartbeats follow the
// context given to AcquireContext (or Do).
func WithCustomHeartbeatContext(ctx context.Context) LockOption {
	return func(l *Lock) {
		if l.heartbeatCancel != nil {
			l.heartbeatCancel()
		}
		l.heartbeatContext, l.heartbeatCancel = context.WithCancel(ctx)
	}
}

// FailIfLocked makes an acquire return at once with ErrNotAcquired when the
// lock is held, instead of waiting. A holder whose RVN this client (or, from
// pglock 0.4.0, the server) saw stand still for the holder's lease is taken
// over, so a retry after a lease takes a dead holder's lock.
func FailIfLocked() LockOption {
	return func(l *Lock) { l.failIfLocked = true }
}

// WithData creates the lock with data. A lock that already has data (kept
// by a release with KeepOnRelease) keeps its data, unless ReplaceData is
// given too.
func WithData(data []byte) LockOption {
	return func(l *Lock) { l.data = data }
}

// KeepOnRelease keeps the lock's entry, with its data, when it is released:
// the next holder finds the data.
func KeepOnRelease() LockOption {
	return func(l *Lock) { l.keepOnRelease = true }
}

// ReplaceData stores the data of WithData (none if not given) in the lock
// when acquiring it, whatever data it had.
func ReplaceData() LockOption {
	return func(l *Lock) { l.replaceData = true }
}

// ReadOnlyLock holds a copy of the information of a lock, from GetAllLocks.
type ReadOnlyLock Lock

// Name returns the lock's name (without the namespace of WithCustomTable).
func (l *ReadOnlyLock) Name() string { return l.name }

// Data returns the content of the lock, if any is available: nil for a lock
// of another role (pglock shows data only to the holder's role).
func (l *ReadOnlyLock) Data() []byte { return l.data }

// Owner returns the owner label of the lock's holder (or last holder, for a
// lock released with KeepOnRelease).
func (l *ReadOnlyLock) Owner() string { return l.owner }

// RecordVersionNumber returns the lock's RVN when it was read.
func (l *ReadOnlyLock) RecordVersionNumber() int64 { return l.recordVersionNumber }

// IsReleased tells whether the lock was released with KeepOnRelease (its
// entry and data kept, nobody holding it) when it was read.
func (l *ReadOnlyLock) IsReleased() bool { return l.isReleased }
