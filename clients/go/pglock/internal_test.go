package pglock

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func TestTextArray(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, `{}`},
		{[]string{"a"}, `{"a"}`},
		{[]string{`a"b`, `c\d`, "e,f", "{g}", "NULL", "", " h ", "ünï ✓"}, `{"a\"b","c\\d","e,f","{g}","NULL",""," h ","ünï ✓"}`},
	} {
		if got := textArray(c.in); got != c.want {
			t.Errorf("textArray(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := int64Array([]int64{1, -2, 9223372036854775807}); got != `{1,-2,9223372036854775807}` {
		t.Error("int64Array:", got)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"0.3.0": true, "0.4.0": true, "1.0": true, "0.2.0": false, "0.10.1": true, "x": false} {
		if versionAtLeast(v, 0, 3) != want {
			t.Errorf("versionAtLeast(%q, 0, 3) != %v", v, want)
		}
	}
}

type stateError string

func (e stateError) Error() string    { return "server error " + string(e) }
func (e stateError) SQLState() string { return string(e) }

func TestTypedError(t *testing.T) {
	if typedError(nil, "x") != nil {
		t.Error("nil")
	}
	var (
		notExist    *NotExistError
		unavailable *UnavailableError
		failed      *FailedPreconditionError
		other       *OtherError
	)
	for _, c := range []struct {
		err  error
		kind any
	}{
		{sql.ErrNoRows, &notExist},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, &unavailable},
		{driver.ErrBadConn, &unavailable},
		{io.ErrUnexpectedEOF, &unavailable},
		{stateError("08006"), &unavailable},
		{stateError("57P01"), &unavailable},
		{fmt.Errorf("wrapped: %w", stateError("40001")), &failed},
		{stateError("40P01"), &failed},
		{stateError("22023"), &other},
		{context.Canceled, &other},
	} {
		err := typedError(c.err, "doing")
		if !errors.As(err, c.kind) || !errors.Is(err, c.err) {
			t.Errorf("%v: %T", c.err, err)
		}
	}
	// A pglock function that does not exist: the extension is missing.
	err := typedError(fmt.Errorf("function pglock_acquire(...) does not exist: %w", stateError("42883")), "doing")
	if !errors.Is(err, ErrExtensionNotInstalled) || !errors.As(err, &other) {
		t.Error("missing function:", err)
	}
}

func TestPeriods(t *testing.T) {
	for _, c := range []struct {
		lease, heartbeat, period time.Duration
	}{
		{20 * time.Second, 5 * time.Second, 5 * time.Second},
		{2 * time.Second, 0, 2 * time.Second},
		{5 * time.Second, 1, minPeriod},
		{10 * time.Millisecond, time.Millisecond, 5 * time.Millisecond},
		{time.Hour, time.Minute, time.Minute},
	} {
		c2 := &Client{leaseDuration: c.lease, heartbeatFrequency: c.heartbeat}
		if p := c2.period(); p != c.period {
			t.Errorf("lease %v, heartbeat %v: period %v, want %v", c.lease, c.heartbeat, p, c.period)
		}
	}
}

func TestLossDeadline(t *testing.T) {
	// renewed + lease - min(period, lease/4).
	now := time.Now()
	for _, c := range []struct {
		lease, heartbeat, margin time.Duration
	}{
		{20 * time.Second, 5 * time.Second, 5 * time.Second},
		{20 * time.Second, time.Second, time.Second},
		{20 * time.Second, 10 * time.Second, 5 * time.Second},
	} {
		cl := &Client{leaseDuration: c.lease, heartbeatFrequency: c.heartbeat}
		l := &Lock{client: cl, leaseDuration: c.lease, renewed: now}
		if got, want := l.lossDeadline(), now.Add(c.lease-c.margin); !got.Equal(want) {
			t.Errorf("lease %v, period %v: deadline %v after renewal, want %v", c.lease, c.heartbeat, got.Sub(now), want.Sub(now))
		}
	}
}

func TestGate(t *testing.T) {
	limit := 2
	g := &gate{limit: func() int { return limit }}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := g.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A third waits, in arrival order with a fourth; one whose context
	// ends leaves the queue.
	order := make(chan int, 3)
	canceled, cancel := context.WithCancel(ctx)
	gone := make(chan error, 1)
	go func() { gone <- g.enter(canceled) }()
	for i := 3; i <= 4; i++ {
		go func() {
			if err := g.enter(ctx); err == nil {
				order <- i
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	g.leave()
	if got := <-order; got != 3 {
		t.Errorf("served %d first", got)
	}
	g.leave()
	if got := <-order; got != 4 {
		t.Errorf("served %d second", got)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy != 2 || len(g.queue) != 0 {
		t.Errorf("busy %d, queue %d", g.busy, len(g.queue))
	}
}
