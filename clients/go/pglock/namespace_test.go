package pglock_test

// Table names as name spaces: GetAllLocks and DropTable.

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pglock/pglock/clients/go/pglock"
)

func TestNamespaces(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		db := openDB(t, driver, roleApp, 6)
		name := lockName(t)
		ctx := testContext(t, 20*time.Second)
		var locks []*pglock.Lock
		for _, table := range []string{"alpha", "beta", pglock.DefaultTableName} {
			c := newClient(t, db, pglock.WithCustomTable(table))
			l, err := c.AcquireContext(ctx, name, pglock.FailIfLocked())
			if err != nil {
				t.Fatalf("table %q: %v", table, err)
			}
			locks = append(locks, l)
		}
		// The default table and "" are pglock's own name space.
		if _, err := newClient(t, db, pglock.WithCustomTable("")).AcquireContext(ctx, name, pglock.FailIfLocked()); !errors.Is(err, pglock.ErrNotAcquired) {
			t.Error("the default table and \"\" are not one name space:", err)
		}
		for _, full := range []string{"alpha/" + name, "beta/" + name, name} {
			if _, ok := lockRow(t, full); !ok {
				t.Errorf("no lock %q in pglock", full)
			}
		}
		for _, l := range locks {
			if l.Name() != name {
				t.Errorf("Name() = %q", l.Name())
			}
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}
	})
}

func TestGetAllLocks(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		table := lockName(t)
		c := newClient(t, openDB(t, driver, roleApp, 4), pglock.WithCustomTable(table),
			pglock.WithHeartbeatFrequency(0), pglock.WithOwner("owner"))
		names := map[string]bool{}
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("lock-%d", i)
			l, err := c.Acquire(name, pglock.WithData([]byte("42")))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			names[name] = true
		}
		kept, err := c.Acquire("kept", pglock.KeepOnRelease(), pglock.WithData([]byte("checkpoint")))
		if err != nil {
			t.Fatal(err)
		}
		if err := kept.Close(); err != nil {
			t.Fatal(err)
		}
		// Another role's lock in the same name space, and a lock outside it.
		other := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithCustomTable(table), pglock.WithOwner("other"))
		ol, err := other.Acquire("theirs", pglock.WithData([]byte("secret")))
		if err != nil {
			t.Fatal(err)
		}
		defer ol.Close()
		outside := newClient(t, openDB(t, driver, roleApp, 2))
		xl, err := outside.Acquire(table + "-outside")
		if err != nil {
			t.Fatal(err)
		}
		defer xl.Close()

		locks, err := c.GetAllLocks()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]*pglock.ReadOnlyLock{}
		for _, l := range locks {
			t.Log(l.Name(), l.Owner(), string(l.Data()), l.RecordVersionNumber(), l.IsReleased())
			seen[l.Name()] = l
		}
		if len(locks) != 7 {
			t.Errorf("%d locks, want 7", len(locks))
		}
		for name := range names {
			l := seen[name]
			if l == nil || l.Owner() != "owner" || string(l.Data()) != "42" || l.IsReleased() || l.RecordVersionNumber() <= 0 {
				t.Errorf("lock %s: %+v", name, l)
			}
		}
		if l := seen["kept"]; l == nil || !l.IsReleased() || string(l.Data()) != "checkpoint" {
			t.Errorf("kept lock: %+v", l)
		}
		if l := seen["theirs"]; l == nil || l.Owner() != "other" || l.Data() != nil {
			t.Errorf("another role's lock (its data must not show): %+v", l)
		}
	})
}

func TestDropTable(t *testing.T) {
	t.Parallel()
	eachDriver(t, func(t *testing.T, driver string) {
		table := lockName(t)
		db := openDB(t, driver, roleApp, 6)
		ctx := testContext(t, 20*time.Second)
		mine := newClient(t, db, pglock.WithCustomTable(table),
			pglock.WithLeaseDuration(2*time.Second), pglock.WithHeartbeatFrequency(200*time.Millisecond))
		// Another owner of the same role and name space: one application.
		peer := newClient(t, db, pglock.WithCustomTable(table), pglock.WithOwner("peer"))
		other := newClient(t, openDB(t, driver, roleOther, 2), pglock.WithCustomTable(table))
		outside := newClient(t, db, pglock.WithCustomTable(table+"-other"))
		global := newClient(t, db)

		held, err := mine.AcquireContext(ctx, "held")
		if err != nil {
			t.Fatal(err)
		}
		acquireAll := func(c *pglock.Client, names ...string) []*pglock.Lock {
			var ls []*pglock.Lock
			for _, n := range names {
				l, err := c.AcquireContext(ctx, n, pglock.WithData([]byte(n)))
				if err != nil {
					t.Fatal(err)
				}
				ls = append(ls, l)
			}
			return ls
		}
		kept, err := peer.AcquireContext(ctx, "kept", pglock.KeepOnRelease(), pglock.WithData([]byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		if err := kept.Close(); err != nil {
			t.Fatal(err)
		}
		acquireAll(peer, "peer's")
		survivors := acquireAll(other, "other role's")
		survivors = append(survivors, acquireAll(outside, "outside")...)
		survivors = append(survivors, acquireAll(global, table+"-global")...)
		survivorNames := []string{table + "/other role's", table + "-other/outside", table + "-global"}

		if err := mine.DropTable(); err != nil {
			t.Fatal("DropTable:", err)
		}
		// The name space's locks of the role are gone, held or kept...
		for _, n := range []string{"held", "kept", "peer's"} {
			if _, ok := lockRow(t, table+"/"+n); ok {
				t.Errorf("lock %q survived DropTable", n)
			}
		}
		// ...and the holder learns it at its next heartbeat.
		if !eventually(ctx, held.IsReleased) {
			t.Error("holder of a dropped lock not told")
		}
		// Other roles', other name spaces' and pglock's own survive.
		for i, l := range survivors {
			if row, ok := lockRow(t, survivorNames[i]); !ok || row.rvn != l.RecordVersionNumber() {
				t.Errorf("lock %q: %+v %v", survivorNames[i], row, ok)
			}
			if err := l.Close(); err != nil {
				t.Errorf("lock %q: %v", l.Name(), err)
			}
		}
		// In pglock's own name space DropTable takes only the client's
		// owner's locks.
		g1 := acquireAll(newClient(t, db, pglock.WithOwner("g1-"+table)), table+"-g1")
		g2c := newClient(t, db, pglock.WithOwner("g2-"+table))
		acquireAll(g2c, table+"-g2")
		if err := g2c.DropTable(); err != nil {
			t.Fatal(err)
		}
		if _, ok := lockRow(t, table+"-g2"); ok {
			t.Error("DropTable in the default name space left the owner's lock")
		}
		if _, ok := lockRow(t, table+"-g1"); !ok {
			t.Error("DropTable in the default name space took another owner's lock")
		}
		g1[0].Close()
	})
}
