package pglock

import (
	"context"
	"database/sql"
	"runtime"
	"sync"
	"weak"
)

// gates holds one gate per *sql.DB: the clients on one pool share it, as
// they share the pool's connections. An entry goes when its pool is garbage.
var gates sync.Map // weak.Pointer[sql.DB] -> *gate

// gateFor returns the gate of db's pool.
func gateFor(db *sql.DB) *gate {
	key := weak.Make(db)
	if g, ok := gates.Load(key); ok {
		return g.(*gate)
	}
	g, loaded := gates.LoadOrStore(key, &gate{limit: func() int { return waiterLimit(key) }})
	if !loaded {
		runtime.AddCleanup(db, func(key weak.Pointer[sql.DB]) { gates.Delete(key) }, key)
	}
	return g.(*gate)
}

// waiterLimit is how many acquires may wait in the server at once on a pool:
// each holds a connection while it waits, and releases and heartbeats need
// connections too. Three quarters of MaxOpenConns, at least one.
func waiterLimit(key weak.Pointer[sql.DB]) int {
	db := key.Value()
	if db == nil {
		return 1
	}
	n := db.Stats().MaxOpenConnections
	if n <= 0 {
		return int(^uint(0) >> 1)
	}
	return max(1, n-max(1, n/4))
}

// gate bounds how many calls wait in the server at once, serving the
// callers over the bound in arrival order.
type gate struct {
	limit func() int
	mu    sync.Mutex
	busy  int
	queue []chan struct{} // closed when its caller is given a place
}

func (g *gate) enter(ctx context.Context) error {
	g.mu.Lock()
	if len(g.queue) == 0 && g.busy < g.limit() {
		g.busy++
		g.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	g.queue = append(g.queue, ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		for i, q := range g.queue {
			if q == ch {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				g.mu.Unlock()
				return ctx.Err()
			}
		}
		g.mu.Unlock()
		g.leave() // given a place as ctx ended: pass it on
		return ctx.Err()
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy--
	for len(g.queue) > 0 && g.busy < g.limit() {
		ch := g.queue[0]
		g.queue = g.queue[1:]
		g.busy++
		close(ch)
	}
}
