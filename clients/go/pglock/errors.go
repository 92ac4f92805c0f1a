package pglock

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// NotExistError gives the NotExist kind to an error: the lock (or row) asked
// for does not exist.
type NotExistError struct {
	error
}

// Unwrap returns the next error in the error chain.
func (err *NotExistError) Unwrap() error { return err.error }

func (err *NotExistError) Error() string { return "not exists: " + errorText(err.error) }

// UnavailableError gives the Unavailable kind to an error: the server could
// not be reached, or the connection broke. Such errors are transient.
type UnavailableError struct {
	error
}

// Unwrap returns the next error in the error chain.
func (err *UnavailableError) Unwrap() error { return err.error }

func (err *UnavailableError) Error() string { return "unavailable: " + errorText(err.error) }

// FailedPreconditionError gives the FailedPrecondition kind to an error: a
// serialization failure (SQLSTATE 40001) or a deadlock (40P01), after which
// the call can be tried again. The package retries such calls itself.
type FailedPreconditionError struct {
	error
}

// Unwrap returns the next error in the error chain.
func (err *FailedPreconditionError) Unwrap() error { return err.error }

func (err *FailedPreconditionError) Error() string {
	return "failed precondition: " + errorText(err.error)
}

// OtherError gives the Other kind to an error: anything that is none of the
// kinds above (bad arguments, missing privileges, the extension missing, ...).
type OtherError struct {
	error
}

// Unwrap returns the next error in the error chain.
func (err *OtherError) Unwrap() error { return err.error }

func (err *OtherError) Error() string { return errorText(err.error) }

func errorText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// ErrNotPostgreSQLDriver is returned by New when the *sql.DB is nil or does
// not hold a PostgreSQL driver it knows (lib/pq or pgx's stdlib), and by
// UnsafeNew when the *sql.DB is nil.
var ErrNotPostgreSQLDriver = errors.New("this is not a PostgreSQL connection")

// ErrNotAcquired is returned when the lock is held by someone else (with
// FailIfLocked) or when the context ends before the lock is acquired.
var ErrNotAcquired = errors.New("cannot acquire lock")

// ErrLockAlreadyReleased is returned when a release or a heartbeat cannot be
// done because the client does not hold the lock (any more): it was released,
// lost, taken over, or never acquired.
var ErrLockAlreadyReleased = errors.New("lock is already released")

// ErrLockNotFound is returned by the Get calls for a lock that does not exist.
var ErrLockNotFound = &NotExistError{errors.New("lock not found")}

// Validation errors, returned by New.
var (
	// ErrDurationTooSmall: the lease is not positive, or the heartbeat
	// period is more than half of it.
	ErrDurationTooSmall = errors.New("heartbeat period must be no more than half the length of the lease duration, " +
		"or locks might expire because the heartbeat takes too long to renew them (a period of a quarter of the lease " +
		"or less is better)")
	// ErrDurationTooLarge: the lease is longer than the extension allows
	// (one day).
	ErrDurationTooLarge = errors.New("lease duration must be at most 24 hours")
	// ErrInvalidOwner: the owner label is empty or longer than 255
	// characters.
	ErrInvalidOwner = errors.New("owner must be 1 to 255 characters long")
)

// ErrExtensionNotInstalled is returned by CreateTable and TryCreateTable when
// the pglock extension is missing from the database and could not be created,
// is too old, or is not usable by the connecting role. The error's text says
// what to run.
var ErrExtensionNotInstalled = errors.New("the pglock extension is not usable in this database")

// sqlState returns the SQLSTATE of a server error from any driver that
// exposes one (lib/pq's *pq.Error and pgx's *pgconn.PgError both do), or "".
func sqlState(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

const (
	stateSerializationFailure    = "40001"
	stateDeadlockDetected        = "40P01"
	stateNotHeld                 = "55000" // object_not_in_prerequisite_state
	stateOtherRole               = "42501" // insufficient_privilege
	stateQueryCanceled           = "57014"
	stateUndefinedFunction       = "42883"
	stateInvalidTransactionState = "25000"
)

// typedError gives err one of the four kinds above, with msg in front.
func typedError(err error, msg string) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", msg, err)
	if sqlState(err) == stateUndefinedFunction && strings.Contains(err.Error(), "pglock_") {
		wrapped = fmt.Errorf("%s: %w (%w: see CreateTable)", msg, err, ErrExtensionNotInstalled)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return &NotExistError{wrapped}
	case isUnavailable(err):
		return &UnavailableError{wrapped}
	case isRetryable(err):
		return &FailedPreconditionError{wrapped}
	}
	return &OtherError{wrapped}
}

func isRetryable(err error) bool {
	s := sqlState(err)
	return s == stateSerializationFailure || s == stateDeadlockDetected
}

// isUnavailable tells connection failures: network errors, a connection the
// driver found broken, the server shutting down or refusing connections.
func isUnavailable(err error) bool {
	var netErr *net.OpError
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return true
	}
	s := sqlState(err)
	switch {
	case strings.HasPrefix(s, "08"), // connection exceptions
		s == "57P01", s == "57P02", s == "57P03", // shutdown, crash, cannot connect now
		s == "53300": // too many connections
		return true
	}
	return false
}
