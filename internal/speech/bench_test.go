package speech

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkCompare measures Compare on 5 s of speech heard in a 10 s
// recording.
func BenchmarkCompare(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	said := noise(rng, 5*SampleRate, 1e6)
	heard := pad(2*time.Second, said, 3*time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compare(said, heard); err != nil {
			b.Fatal(err)
		}
	}
}
