package speech

import (
	"math"
	"slices"
)

// Delay tracking. A receiver's adaptive jitter buffer changes its playout
// delay during a call: it grows by a codec frame when it plays concealment
// without moving on, and shrinks when it drops a quiet frame. After the
// global alignment, Compare follows such changes with a delay path, one
// offset per analysis frame, found by dynamic programming.
const (
	// maxWander bounds the path, in hops either side of the global
	// alignment: 200 ms.
	maxWander = 40
	// maxStep bounds one change of the path, in hops: 120 ms.
	maxStep = 24
	// stepCost is what one change of the path costs, in dB of frame
	// distance. Speech misaligned by 20 ms is about 6 dB away from itself
	// per frame, so a change pays for itself after about 17 active frames
	// (80 ms) of speech better aligned. A zeroed 20 ms frame spoils four or
	// five analysis frames, each costing at most maxFrameCost where it is
	// and about 6 dB at a neighbouring offset: stepping away from it and
	// back, two changes, would gain some 20 dB for 200, so it never pays.
	stepCost = 100.0
	// maxFrameCost caps a frame's distance when choosing the path: a frame
	// that matches nothing at any offset, such as lost audio, says nothing
	// about the delay and must not pull the path.
	maxFrameCost = 10.0
)

// track returns, for each of said's frames, the offset in hops from the
// global alignment at which heard best follows it. ls are said's band levels
// and grid heard's, on the same floor and overall level, grid frame
// t+maxWander+k being heard at offset k from said's frame t; only the active
// frames of said count. The path may start at any offset; each change, in
// either direction because buffers both grow and shrink, costs stepCost.
func track(ls, grid [][numBands]float64, active []int) []int {
	const states = 2*maxWander + 1
	ns := len(ls)
	isActive := make([]bool, ns)
	for _, t := range active {
		isActive[t] = true
	}
	// from[t][s] is how far the state before s at frame t lies from s;
	// cost[s] is the least total cost of a path ending in state s (offset
	// s-maxWander).
	from := make([][states]int8, ns)
	cost := make([]float64, states)
	next := make([]float64, states)
	for t := range ns {
		least := slices.Min(cost)
		for s := range states {
			best, bestFrom := cost[s], s
			// Staying is best, and ties stay, unless some state is more
			// than stepCost cheaper.
			for p := max(s-maxStep, 0); best > least+stepCost && p <= min(s+maxStep, states-1); p++ {
				if c := cost[p] + stepCost; c < best {
					best, bestFrom = c, p
				}
			}
			if isActive[t] {
				best += min(frameDistance(&ls[t], &grid[t+s]), maxFrameCost)
			}
			next[s] = best
			from[t][s] = int8(bestFrom - s)
		}
		cost, next = next, cost
	}
	s := maxWander
	for k := range states {
		if cost[k] < cost[s] {
			s = k
		}
	}
	path := make([]int, ns)
	for t := ns - 1; t >= 0; t-- {
		path[t] = s - maxWander
		s += int(from[t][s])
	}
	return path
}

// frameDistance is the root mean square difference of two frames' band
// levels, in dB.
func frameDistance(x, y *[numBands]float64) float64 {
	var d2 float64
	for b := range numBands {
		d := x[b] - y[b]
		d2 += d * d
	}
	return math.Sqrt(d2 / numBands)
}
