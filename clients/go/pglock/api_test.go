package pglock_test

// cirello.io/pglock v1.16's exported API, with its signatures: this file
// compiles only while the package keeps every one of them.

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

var (
	_ func(*sql.DB, ...pglock.ClientOption) (*pglock.Client, error) = pglock.New
	_ func(*sql.DB, ...pglock.ClientOption) (*pglock.Client, error) = pglock.UnsafeNew

	_ func(time.Duration) pglock.ClientOption      = pglock.WithLeaseDuration
	_ func(time.Duration) pglock.ClientOption      = pglock.WithHeartbeatFrequency
	_ func(string) pglock.ClientOption             = pglock.WithOwner
	_ func(string) pglock.ClientOption             = pglock.WithCustomTable
	_ func(pglock.Logger) pglock.ClientOption      = pglock.WithLogger
	_ func(pglock.LevelLogger) pglock.ClientOption = pglock.WithLevelLogger
	_ pglock.ClientOption                          = func(*pglock.Client) {}

	_ func(*pglock.Client, string, ...pglock.LockOption) (*pglock.Lock, error)                                             = (*pglock.Client).Acquire
	_ func(*pglock.Client, context.Context, string, ...pglock.LockOption) (*pglock.Lock, error)                            = (*pglock.Client).AcquireContext
	_ func(*pglock.Client, context.Context, string, func(context.Context, *pglock.Lock) error, ...pglock.LockOption) error = (*pglock.Client).Do
	_ func(*pglock.Client, *pglock.Lock) error                                                                             = (*pglock.Client).Release
	_ func(*pglock.Client, context.Context, *pglock.Lock) error                                                            = (*pglock.Client).ReleaseContext
	_ func(*pglock.Client, context.Context, *pglock.Lock) error                                                            = (*pglock.Client).SendHeartbeat
	_ func(*pglock.Client, string) (*pglock.Lock, error)                                                                   = (*pglock.Client).Get
	_ func(*pglock.Client, context.Context, string) (*pglock.Lock, error)                                                  = (*pglock.Client).GetContext
	_ func(*pglock.Client, string) ([]byte, error)                                                                         = (*pglock.Client).GetData
	_ func(*pglock.Client, context.Context, string) ([]byte, error)                                                        = (*pglock.Client).GetDataContext
	_ func(*pglock.Client) ([]*pglock.ReadOnlyLock, error)                                                                 = (*pglock.Client).GetAllLocks
	_ func(*pglock.Client, context.Context) ([]*pglock.ReadOnlyLock, error)                                                = (*pglock.Client).GetAllLocksContext
	_ func(*pglock.Client) error                                                                                           = (*pglock.Client).CreateTable
	_ func(*pglock.Client) error                                                                                           = (*pglock.Client).TryCreateTable
	_ func(*pglock.Client) error                                                                                           = (*pglock.Client).DropTable

	_ func(*pglock.Lock) []byte = (*pglock.Lock).Data
	_ func(*pglock.Lock) error  = (*pglock.Lock).Close
	_ func(*pglock.Lock) bool   = (*pglock.Lock).IsReleased
	_ func(*pglock.Lock) string = (*pglock.Lock).Owner
	_ func(*pglock.Lock) int64  = (*pglock.Lock).RecordVersionNumber

	_ func(*pglock.ReadOnlyLock) string = (*pglock.ReadOnlyLock).Name
	_ func(*pglock.ReadOnlyLock) []byte = (*pglock.ReadOnlyLock).Data
	_ func(*pglock.ReadOnlyLock) string = (*pglock.ReadOnlyLock).Owner
	_                                   = (*pglock.ReadOnlyLock)((*pglock.Lock)(nil)) // type ReadOnlyLock Lock

	_ func([]byte) pglock.LockOption          = pglock.WithData
	_ func() pglock.LockOption                = pglock.ReplaceData
	_ func() pglock.LockOption                = pglock.FailIfLocked
	_ func() pglock.LockOption                = pglock.KeepOnRelease
	_ func(context.Context) pglock.LockOption = pglock.WithCustomHeartbeatContext
	_ pglock.LockOption                       = func(*pglock.Lock) {}

	_ error = pglock.ErrNotAcquired
	_ error = pglock.ErrLockAlreadyReleased
	_ error = pglock.ErrNotPostgreSQLDriver
	_ error = pglock.ErrDurationTooSmall

	_ *pglock.NotExistError       = pglock.ErrLockNotFound
	_ error                       = &pglock.NotExistError{}
	_ error                       = &pglock.UnavailableError{}
	_ error                       = &pglock.FailedPreconditionError{}
	_ error                       = &pglock.OtherError{}
	_ interface{ Unwrap() error } = &pglock.NotExistError{}
	_ interface{ Unwrap() error } = &pglock.UnavailableError{}
	_ interface{ Unwrap() error } = &pglock.FailedPreconditionError{}
	_ interface{ Unwrap() error } = &pglock.OtherError{}

	_ pglock.Logger      = interface{ Println(v ...interface{}) }(nil)
	_ pglock.LevelLogger = interface {
		Debug(msg string, args ...any)
		Error(msg string, args ...any)
	}(nil)

	_ string        = pglock.DefaultTableName
	_ time.Duration = pglock.DefaultLeaseDuration
	_ time.Duration = pglock.DefaultHeartbeatFrequency
)

func TestDefaults(t *testing.T) {
	if pglock.DefaultLeaseDuration != 20*time.Second || pglock.DefaultHeartbeatFrequency != 5*time.Second ||
		pglock.DefaultTableName != "locks" {
		t.Error("defaults differ from the original's")
	}
}
