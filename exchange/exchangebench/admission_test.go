package exchangebench

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"mahfooz/exchange"
)

// admissionDevices is how many enrolled devices the admission benchmark's clients
// take turns being, so that the registry is asked about more than one.
const admissionDevices = 16

// BenchmarkAdmission measures admissions per second: TCP connect, a full TLS 1.3
// handshake (X25519MLKEM768, no session resumption, the device certificate checked
// against the registry inside the handshake), Hello/Welcome, close. The exchange
// runs with its SQLite store, as deployed, so each admission also looks up the
// device's (empty) mailbox. Clients run concurrently in the same process as the
// exchange, so they share its CPUs.
//
// The "tls-only" sub-benchmark is the same handshake against a bare crypto/tls
// server with the exchange's certificate and TLS settings but no registry and no
// Hello/Welcome: the floor that the cryptography alone sets.
func BenchmarkAdmission(b *testing.B) {
	dir, err := benchDir("admission-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	r, err := startRig(dir, func(cfg *exchange.Config) (io.Closer, error) { return configureDelivery(dir, cfg) })
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := r.close(); err != nil {
			b.Error(err)
		}
	}()
	devices, err := enrolMany(r.a, "admit", admissionDevices)
	if err != nil {
		b.Fatal(err)
	}
	cfgs := make([]*tls.Config, len(devices))
	for i := range devices {
		cfgs[i] = clientTLS(r.roots, &devices[i])
	}

	b.Run("exchange", func(b *testing.B) {
		runAdmissions(b, func(cfg *tls.Config) (tls.ConnectionState, error) {
			c, err := connect(r.addr, cfg)
			if err != nil {
				return tls.ConnectionState{}, err
			}
			cs := c.tc.ConnectionState()
			return cs, c.close()
		}, cfgs)
	})

	b.Run("tls-only", func(b *testing.B) {
		addr, stop, err := bareTLSServer(r)
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
		runAdmissions(b, func(cfg *tls.Config) (tls.ConnectionState, error) {
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				return tls.ConnectionState{}, err
			}
			tc := tls.Client(raw, cfg)
			defer tc.Close()
			if err := tc.Handshake(); err != nil {
				return tls.ConnectionState{}, err
			}
			// The server's one byte says it has checked the client's certificate.
			var one [1]byte
			if _, err := tc.Read(one[:]); err != nil {
				return tls.ConnectionState{}, err
			}
			return tc.ConnectionState(), nil
		}, cfgs)
	})
}

// runAdmissions runs admit b.N times from 4×GOMAXPROCS goroutines and reports
// admissions/s. It fails the benchmark unless every connection used X25519MLKEM768.
func runAdmissions(b *testing.B, admit func(*tls.Config) (tls.ConnectionState, error), cfgs []*tls.Config) {
	var next atomic.Uint64
	var once sync.Once
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cs, err := admit(cfgs[next.Add(1)%uint64(len(cfgs))])
			if err != nil {
				b.Error(err)
				return
			}
			if cs.CurveID != tls.X25519MLKEM768 || cs.Version != tls.VersionTLS13 || cs.DidResume {
				once.Do(func() { b.Errorf("connection used %v, TLS %x, resumed %v", cs.CurveID, cs.Version, cs.DidResume) })
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admissions/s")
}

// bareTLSServer serves TLS handshakes with the exchange's certificate and TLS 1.3
// settings, requiring any client certificate, and writes one byte once the
// handshake is done.
func bareTLSServer(r *rig) (addr string, stop func(), err error) {
	cert, err := r.a.IssueServerCertificate("127.0.0.1")
	if err != nil {
		return "", nil, err
	}
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(raw, cfg)
				defer tc.Close()
				if tc.Handshake() == nil {
					tc.Write([]byte{1})
				}
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close(); wg.Wait() }, nil
}
