package audiodev

import "sync/atomic"

// frameQueue is a bounded first-in first-out queue of 20 ms frames between
// the audio thread and the caller, with a pool of spare frame buffers so that
// the audio thread does not allocate. No operation on it waits for the other
// side: put drops the oldest frame when the queue is full, and get and spare
// report when they have nothing. It is safe for concurrent use.
type frameQueue struct {
	full    chan []int16 // frames waiting, oldest first
	free    chan []int16 // spare buffers of FrameSamples samples
	dropped atomic.Uint64
}

// newFrameQueue returns a queue that holds at most depth frames, with enough
// spare buffers for a producer filling one frame and a consumer emptying one
// while the queue is full.
func newFrameQueue(depth int) *frameQueue {
	q := &frameQueue{
		full: make(chan []int16, depth),
		free: make(chan []int16, depth+2),
	}
	for range depth + 2 {
		q.free <- make([]int16, FrameSamples)
	}
	return q
}

// spare returns a buffer of FrameSamples samples to fill. It takes one from
// the pool, or, if the pool is empty, allocates one.
func (q *frameQueue) spare() []int16 {
	select {
	case f := <-q.free:
		return f
	default:
		return make([]int16, FrameSamples)
	}
}

// recycle returns a buffer to the pool, or lets it go if the pool is full.
func (q *frameQueue) recycle(f []int16) {
	select {
	case q.free <- f:
	default:
	}
}

// put appends a filled frame, dropping the oldest frames waiting if the
// queue is full. The queue owns f afterwards.
func (q *frameQueue) put(f []int16) {
	for {
		select {
		case q.full <- f:
			return
		default:
		}
		select {
		case old := <-q.full:
			q.dropped.Add(1)
			q.recycle(old)
		default:
		}
	}
}

// get returns the oldest frame waiting, and false if there is none. The
// caller owns the frame and should recycle it when done.
func (q *frameQueue) get() ([]int16, bool) {
	select {
	case f := <-q.full:
		return f, true
	default:
		return nil, false
	}
}

// len returns the number of frames waiting.
func (q *frameQueue) len() int { return len(q.full) }
