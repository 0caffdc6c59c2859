package linkem

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs functions at given times from one goroutine, keeping the
// pending ones in a heap ordered by time, then by order of scheduling. The
// functions must not block. It is safe for concurrent use.
type scheduler struct {
	mu      sync.Mutex
	events  eventHeap
	seq     uint64
	stopped bool
	wake    chan struct{}
	done    chan struct{}
	exited  chan struct{}
}

type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = event{}
	*h = old[:len(old)-1]
	return e
}

// newScheduler starts a scheduler; stop ends it.
func newScheduler() *scheduler {
	s := &scheduler{
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	go s.run()
	return s
}

// at schedules fn to run at t, or as soon as possible if t has passed.
// After stop, fn is never run.
func (s *scheduler) at(t time.Time, fn func()) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.seq++
	heap.Push(&s.events, event{at: t, seq: s.seq, fn: fn})
	first := s.events[0].seq == s.seq
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// stop discards pending events and waits for the scheduler goroutine to end.
// It is idempotent.
func (s *scheduler) stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		s.events = nil
		close(s.done)
	}
	s.mu.Unlock()
	<-s.exited
}

func (s *scheduler) run() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		var wait time.Duration = -1
		var fn func()
		if len(s.events) > 0 {
			if d := time.Until(s.events[0].at); d > 0 {
				wait = d
			} else {
				fn = heap.Pop(&s.events).(event).fn
			}
		}
		s.mu.Unlock()
		if fn != nil {
			fn()
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-tc:
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}
