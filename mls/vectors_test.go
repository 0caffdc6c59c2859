package mls

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// hexBytes decodes the hex strings of the official test vectors.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = b
	return nil
}

// loadVectors reads testdata/name into v, a pointer to a slice of cases. A missing
// or empty file fails the test: the vectors are the proof, not an option.
func loadVectors[T any](t testing.TB, name string) []T {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("test vectors: %v", err)
	}
	var cases []T
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("test vectors %s: %v", name, err)
	}
	if len(cases) == 0 {
		t.Fatalf("test vectors %s: no cases", name)
	}
	return cases
}

// suiteOrSkip returns the case's cipher suite, or marks the subtest skipped when the
// suite is one this package deliberately leaves out (X448/Ed448). The count of
// skipped cases is printed by the caller.
func suiteOrSkip(t *testing.T, cs uint16) CipherSuite {
	t.Helper()
	s := CipherSuite(cs)
	if !s.Supported() {
		t.Skipf("cipher suite %v is not implemented", s)
	}
	return s
}

// vectorCount logs how many cases of a vector file ran, passed and were skipped.
type vectorCount struct {
	name         string
	ran, skipped int
}

func (c *vectorCount) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		c.ran++
		defer func() {
			if t.Skipped() {
				c.skipped++
			}
		}()
		f(t)
	})
}

func (c *vectorCount) report(t *testing.T) {
	t.Logf("%s: %d cases ran, %d skipped (unsupported suite)", c.name, c.ran-c.skipped, c.skipped)
	vectorTotals.Lock()
	vectorTotals.lines = append(vectorTotals.lines, fmt.Sprintf("%-45s %5d cases ran, %4d skipped (X448/Ed448 suites)", c.name, c.ran-c.skipped, c.skipped))
	vectorTotals.Unlock()
	if c.ran-c.skipped == 0 {
		t.Errorf("%s: no case ran", c.name)
	}
}

// vectorTotals collects every vector file's count for TestMain to print, so that a
// plain `go test` shows how many official cases ran.
var vectorTotals struct {
	sync.Mutex
	lines []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	vectorTotals.Lock()
	if len(vectorTotals.lines) > 0 {
		fmt.Println("official test vectors:")
		for _, l := range vectorTotals.lines {
			fmt.Println("  " + l)
		}
	}
	vectorTotals.Unlock()
	os.Exit(code)
}
