package pglock_test

import (
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

func TestSmoke(t *testing.T) {
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 5)
		c := newClient(t, db, pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		if err := c.CreateTable(); err != nil {
			t.Fatal(err)
		}
		name := lockName(t)
		l, err := c.Acquire(name, pglock.WithData([]byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		r1 := l.RecordVersionNumber()
		time.Sleep(700 * time.Millisecond)
		r2 := l.RecordVersionNumber()
		t.Log(r1, r2, string(l.Data()))
		if r1 == r2 {
			t.Fatal("no heartbeat")
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
