package linkem

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSchedulerRunsInTimeOrder(t *testing.T) {
	s := newScheduler()
	defer s.stop()
	base := time.Now().Add(20 * time.Millisecond)
	var mu sync.Mutex
	var order []int
	// Scheduled out of order, with ties: ties keep scheduling order.
	for _, i := range []int{5, 1, 4, 2, 3, 0} {
		s.at(base.Add(time.Duration(i/2)*time.Millisecond), func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	waitFor(t, "every event", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 6
	})
	if want := []int{1, 0, 2, 3, 5, 4}; !slices.Equal(order, want) {
		t.Errorf("ran in order %v, want %v", order, want)
	}
}

func TestSchedulerStopDiscardsPending(t *testing.T) {
	s := newScheduler()
	ran := make(chan struct{}, 1)
	s.at(time.Now().Add(time.Hour), func() { ran <- struct{}{} })
	s.stop()
	s.stop()
	s.at(time.Now(), func() { ran <- struct{}{} })
	select {
	case <-ran:
		t.Error("an event ran after stop")
	default:
	}
}

// BenchmarkSchedulerLateness measures how late events run: events spread
// over the next 100 ms, like packets on a link, and the median and 99th
// percentile lateness are reported.
func BenchmarkSchedulerLateness(b *testing.B) {
	s := newScheduler()
	defer s.stop()
	rng := rand.New(rand.NewPCG(1, 1))
	var mu sync.Mutex
	var late []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range b.N {
		at := time.Now().Add(time.Duration(rng.Int64N(int64(100 * time.Millisecond))))
		wg.Add(1)
		s.at(at, func() {
			d := time.Since(at)
			mu.Lock()
			late = append(late, d)
			mu.Unlock()
			wg.Done()
		})
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // about 1000 packets/s
		}
	}
	wg.Wait()
	slices.Sort(late)
	b.ReportMetric(float64(late[len(late)/2])/1e6, "p50-late-ms")
	b.ReportMetric(float64(late[len(late)*99/100])/1e6, "p99-late-ms")
}
