// Package exchangebench measures the exchange as a deployment would see it: real
// TLS 1.3 connections with device certificates over loopback, against an exchange
// started in-process (or, for memory, in a child process of its own).
//
// It holds only tests and benchmarks; none of them runs in a plain `go test`:
//
//   - BenchmarkAdmission: TLS 1.3 handshakes (X25519MLKEM768, device certificate
//     checked against the registry) followed by Hello/Welcome, from concurrent
//     clients, in admissions per second.
//   - TestIdleConnections (MAHFOOZ_BENCH=1): the exchange's memory per idle
//     authenticated connection, at 10,000 connections, measured inside a child
//     process that runs only the exchange, with a breakdown by allocation site.
//   - BenchmarkDeliveryLatency: one 1 KB message from device A, sent with Send and
//     stored durably, until device B holds the Deliver; p50 and p99.
//   - BenchmarkFanout: durable deliveries per second for 1 KB messages fanned out to
//     1, 10 and 100 connected, acknowledging recipients, next to an embedded NATS
//     server doing the same fan-out in the same run, both core NATS (in memory, no
//     acknowledgement) and JetStream (file storage, fsync on every write, explicit
//     acknowledgements).
//
// docs/benchmarks.md gives the figures and the command that reproduces each;
// scripts/bench-exchange runs the fan-out comparison and prints the ratios.
package exchangebench
