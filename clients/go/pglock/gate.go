package pglock

import (
	"context"
	"sync"
)

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
