package exchangebench

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"mahfooz/exchange"
)

// idleProfileRate is the child's heap sampling rate: one sample per 4 KiB
// allocated on average, fine enough to attribute a few KiB per connection and
// coarse enough that the profile's own records do not weigh on the figures.
const idleProfileRate = 4096

// runIdleServer is the child of measureIdle: it serves an exchange under dir,
// leaves the devices' credentials in dir, prints "ready ADDR", then answers
// commands read from in, one per line, until in ends:
//
//	mem               one JSON memSample, after garbage collection
//	sites N [PATH]    the path of a text file listing the largest allocation
//	                  sites in bytes per connection for N connections; with PATH,
//	                  also writes the heap profile there
func runIdleServer(dir string, in io.Reader, out io.Writer) error {
	runtime.MemProfileRate = idleProfileRate
	n, _ := strconv.Atoi(os.Getenv(idleConnsEnv))
	if err := raiseFileLimit(uint64(n) + 512); err != nil {
		return err
	}
	devices, err := strconv.Atoi(os.Getenv(idleDevicesEnv))
	if err != nil || devices < 1 {
		return fmt.Errorf("%s=%q: want a positive number", idleDevicesEnv, os.Getenv(idleDevicesEnv))
	}
	r, err := startRig(dir, func(cfg *exchange.Config) (io.Closer, error) {
		cfg.PingInterval = idlePingInterval
		return configureDelivery(dir, cfg)
	})
	if err != nil {
		return err
	}
	defer r.close()
	ds, err := enrolMany(r.a, "idle", devices)
	if err != nil {
		return err
	}
	creds := idleCredentials{Root: r.root.Raw}
	for _, d := range ds {
		creds.Devices = append(creds.Devices, struct {
			Chain [][]byte
			Seed  []byte
		}{d.cert.Certificate, d.cert.PrivateKey.(interface{ Seed() []byte }).Seed()})
	}
	raw, err := json.Marshal(creds)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, idleDevicesFile), raw, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "ready %s\n", r.addr)

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var answer string
		switch f[0] {
		case "mem":
			b, err := json.Marshal(sampleMemory())
			if err != nil {
				return err
			}
			answer = string(b)
		case "sites":
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 1 {
				answer = "error bad connection count"
				break
			}
			if len(f) > 2 {
				if err := writeHeapProfile(f[2]); err != nil {
					answer = "error " + err.Error()
					break
				}
			}
			path := filepath.Join(dir, "sites.txt")
			if err := os.WriteFile(path, []byte(allocationSites(n)), 0o600); err != nil {
				answer = "error " + err.Error()
				break
			}
			answer = path
		default:
			answer = "error unknown command"
		}
		fmt.Fprintln(out, answer)
	}
	return sc.Err()
}

// sampleMemory collects garbage until idle goroutines' stacks have shrunk as far
// as they will, then reads the runtime's statistics and the process's resident set.
func sampleMemory() memSample {
	var ms runtime.MemStats
	debug.FreeOSMemory() // a collection, and RSS without freed pages
	runtime.ReadMemStats(&ms)
	// Each collection at most halves an idle goroutine's stack; go on until the
	// stacks stop shrinking.
	for range 8 {
		stack := ms.StackInuse
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if ms.StackInuse == stack {
			break
		}
	}
	return memSample{
		HeapInuse:   ms.HeapInuse,
		StackInuse:  ms.StackInuse,
		HeapObjects: ms.HeapObjects,
		RSSKiB:      residentKiB(),
		Goroutines:  runtime.NumGoroutine(),
	}
}

// residentKiB is VmRSS from /proc/self/status.
func residentKiB() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// allocationSites lists the in-use heap by allocation site, largest first, in
// bytes per connection for n connections. A site is the allocating function and
// the two calls above it, leaving out the runtime's own frames. Sampled sizes are
// scaled up as pprof does.
func allocationSites(n int) string {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		k, _ := runtime.MemProfile(nil, false)
		recs = make([]runtime.MemProfileRecord, k+64)
		k, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:k]
			break
		}
	}
	type site struct {
		name        string
		bytes, objs float64
	}
	bySite := map[string]*site{}
	var total float64
	for _, r := range recs {
		objs, bytes := r.InUseObjects(), r.InUseBytes()
		if objs <= 0 {
			continue
		}
		// pprof's scaleHeapSample: an allocation of size s is sampled with
		// probability 1-exp(-s/rate).
		avg := float64(bytes) / float64(objs)
		scale := 1 / (1 - math.Exp(-avg/idleProfileRate))
		name := siteName(r.Stack())
		s := bySite[name]
		if s == nil {
			s = &site{name: name}
			bySite[name] = s
		}
		s.bytes += float64(bytes) * scale
		s.objs += float64(objs) * scale
		total += float64(bytes) * scale
	}
	sites := make([]*site, 0, len(bySite))
	for _, s := range bySite {
		sites = append(sites, s)
	}
	slices.SortFunc(sites, func(a, b *site) int { return cmp.Compare(b.bytes, a.bytes) })
	var b strings.Builder
	fmt.Fprintf(&b, "in-use heap by allocation site (sampled every %d B, scaled), per connection; total %.0f B:\n",
		idleProfileRate, total/float64(n))
	for _, s := range sites[:min(len(sites), 15)] {
		fmt.Fprintf(&b, "%7.0f B %6.2f objects  %s\n", s.bytes/float64(n), s.objs/float64(n), s.name)
	}
	return b.String()
}

// siteName names an allocation by the first three frames outside the runtime.
func siteName(stack []uintptr) string {
	frames := runtime.CallersFrames(stack)
	var names []string
	for len(names) < 3 {
		f, more := frames.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/") {
			names = append(names, shortFunc(f.Function))
		}
		if !more {
			break
		}
	}
	if len(names) == 0 {
		return "(runtime)"
	}
	return strings.Join(names, " < ")
}

// shortFunc drops the directories of a function's package path.
func shortFunc(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		return fn[i+1:]
	}
	return fn
}
