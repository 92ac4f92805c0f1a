package pglock

import "fmt"

// Logger is used for internal inspection of the lock client (see WithLogger;
// LevelLogger tells debug lines from errors).
type Logger interface {
	Println(v ...interface{})
}

// LevelLogger is used for internal inspection of the lock client. Debug gets
// the steps of acquiring, renewing and releasing; Error gets failures,
// lost locks among them. msg and args are as for fmt.Sprintf.
type LevelLogger interface {
	Debug(msg string, args ...any)
	Error(msg string, args ...any)
}

// printlnLogger adapts a Logger to a LevelLogger.
type printlnLogger struct{ l Logger }

func (p printlnLogger) Debug(msg string, args ...any) { p.l.Println(fmt.Sprintf(msg, args...)) }
func (p printlnLogger) Error(msg string, args ...any) { p.l.Println(fmt.Sprintf(msg, args...)) }

type discardLogger struct{}

func (discardLogger) Debug(string, ...any) {}
func (discardLogger) Error(string, ...any) {}
