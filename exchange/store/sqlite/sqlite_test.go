package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mahfooz/exchange/store"
	"mahfooz/exchange/store/storetest"
	"mahfooz/wire"
)

var ctx = context.Background()

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), FileName))
	})
}

func testMessage(n int, payload []byte, recipients ...wire.DeviceID) *store.Message {
	now := time.Now()
	return &store.Message{
		Sender:     wire.DeviceID{1},
		ID:         wire.MessageID{0: 7, 8: byte(n >> 24), 9: byte(n >> 16), 10: byte(n >> 8), 11: byte(n)},
		Digest:     sha256.Sum256(payload),
		GroupID:    wire.GroupID("group"),
		Recipients: recipients,
		SentAt:     now,
		Expires:    now.Add(time.Hour),
		Payload:    payload,
	}
}

func TestReopenKeepsStateAndSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	b := wire.DeviceID{2}
	r1, err := store.EnqueueWait(ctx, s, testMessage(1, []byte("kept"), b))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := store.EnqueueWait(ctx, s, testMessage(2, []byte("acked"), b))
	if err != nil {
		t.Fatal(err)
	}
	// The highest sequence's message is deleted: its number must still not come back.
	if err := store.AckWait(ctx, s, b, []uint64{r2.Sequence}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	es, err := s.Pending(ctx, b, 0, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Sequence != r1.Sequence || string(es[0].Payload) != "kept" {
		t.Fatalf("after reopening: %+v", es)
	}
	r3, err := store.EnqueueWait(ctx, s, testMessage(3, []byte("new"), b))
	if err != nil {
		t.Fatal(err)
	}
	if r3.Sequence <= r2.Sequence {
		t.Errorf("sequence %d reused or went back (last was %d)", r3.Sequence, r2.Sequence)
	}
	if r, err := store.EnqueueWait(ctx, s, testMessage(2, []byte("acked"), b)); err != nil || !r.Duplicate || r.Sequence != r2.Sequence {
		t.Errorf("dedup record lost across reopen: %+v, %v", r, err)
	}

	// A message for two recipients, one of whom acknowledges before a restart
	// and one after: the payload goes with the last.
	c := wire.DeviceID{3}
	r4, err := store.EnqueueWait(ctx, s, testMessage(4, []byte("for two"), b, c))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AckWait(ctx, s, b, []uint64{r1.Sequence, r3.Sequence, r4.Sequence}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if st, err := s.Stats(ctx); err != nil || st.Messages != 1 || st.MailboxEntries != 1 {
		t.Fatalf("after reopening: %+v, %v", st, err)
	}
	if err := store.AckWait(ctx, s, c, []uint64{r4.Sequence}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Messages != 0 || st.MailboxEntries != 0 {
		t.Errorf("payload kept after its last recipient acknowledged: %+v, %v", st, err)
	}
}

// crashEnv makes the test binary a child that enqueues and is then killed.
const crashEnv = "MAHFOOZ_SQLITE_CRASH_CHILD"

// TestMain doubles as the child process of TestDurableAcrossCrash.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild enqueues messages, printing each sequence once Enqueue reported it
// durable, and kills its own process without closing anything, as a power cut or
// kill -9 would.
func crashChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		n  int
	)
	for i := range 200 {
		wg.Add(1)
		s.Enqueue(testMessage(i, fmt.Appendf(nil, "payload %d", i), wire.DeviceID{2}), func(r store.Result, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Println("error", err)
				return
			}
			fmt.Println("durable", r.Sequence)
			if n++; n == 150 {
				os.Stdout.Sync()
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		})
	}
	wg.Wait()
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

func TestDurableAcrossCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	var durable []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "durable" {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			durable = append(durable, v)
		} else if len(f) > 0 && f[0] == "error" {
			t.Fatalf("child: %s", sc.Text())
		}
	}
	if len(durable) < 150 {
		t.Fatalf("child reported %d durable messages before dying, want at least 150", len(durable))
	}
	s := openTest(t, path)
	es, err := s.Pending(ctx, wire.DeviceID{2}, 0, 1000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[uint64]bool)
	for _, e := range es {
		have[e.Sequence] = true
	}
	for _, seq := range durable {
		if !have[seq] {
			t.Errorf("message %d was reported durable but is gone after the crash", seq)
		}
	}
	t.Logf("%d reported durable before the kill; %d found after", len(durable), len(es))
}

// fileContains reports whether any of the database's files hold needle.
func fileContains(t *testing.T, path string, needle []byte) []string {
	t.Helper()
	var found []string
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		b, err := os.ReadFile(path + suffix)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			found = append(found, filepath.Base(path+suffix))
		}
	}
	return found
}

func TestDeletedCiphertextLeavesNoTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	b, c := wire.DeviceID{2}, wire.DeviceID{3}
	acked := bytes.Repeat([]byte("ACKED-CANARY "), 300) // spans more than one page
	expired := bytes.Repeat([]byte("EXPIRED-CANARY "), 40)
	blob := bytes.Repeat([]byte("BLOB-CANARY "), 40)

	r, err := store.EnqueueWait(ctx, s, testMessage(1, acked, b, c))
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage(2, expired, b)
	m.Expires = m.SentAt.Add(time.Minute)
	if _, err := store.EnqueueWait(ctx, s, m); err != nil {
		t.Fatal(err)
	}
	bid := wire.BlobID{9}
	if err := s.CreateBlob(ctx, store.Blob{ID: bid, Owner: c, Recipients: []wire.DeviceID{b}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendChunk(ctx, c, bid, 0, true, blob); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for _, canary := range [][]byte{acked, expired, blob} {
		if len(fileContains(t, path, canary[:40])) == 0 {
			t.Fatalf("canary %q not found while stored: the scan would prove nothing", canary[:12])
		}
	}
	for _, d := range []wire.DeviceID{b, c} {
		if err := store.AckWait(ctx, s, d, []uint64{r.Sequence}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.BlobFetched(ctx, b, bid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sweep(ctx, m.Expires); err != nil { // also checkpoints
		t.Fatal(err)
	}
	for _, canary := range [][]byte{acked, expired, blob} {
		if f := fileContains(t, path, canary[:40]); len(f) > 0 {
			t.Errorf("deleted ciphertext %q still in %v", canary[:12], f)
		}
	}
}

func TestOneStorePerDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(path, Options{}); err == nil {
		s2.Close()
		t.Fatal("a second store opened the same database")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopening after Close: %v", err)
	}
	s.Close()
}

func TestFilesOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	if _, err := store.EnqueueWait(ctx, s, testMessage(1, []byte("x"), wire.DeviceID{2})); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-lock"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want owner only", filepath.Base(path+suffix), fi.Mode().Perm())
		}
	}
}

func TestFailedWriteRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	b := wire.DeviceID{2}
	r1, err := store.EnqueueWait(ctx, s, testMessage(1, []byte("first"), b))
	if err != nil {
		t.Fatal(err)
	}
	// A row the store did not write takes the next sequence: the next write
	// fails in the database, is rolled back, and the store carries on past it.
	if _, err := s.db.Exec(`INSERT INTO messages (seq, sender, message_id, group_id, sent_at, expires, recipients, payload)
		VALUES (?, x'00', x'00', x'00', 0, 0, x'00', x'00')`, int64(r1.Sequence+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.EnqueueWait(ctx, s, testMessage(2, []byte("fails"), b)); err == nil {
		t.Fatal("a write over a row the store did not write succeeded")
	}
	// The store reread its state: later writes, however many at once, succeed.
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok []uint64
	)
	for i := range 4 {
		wg.Add(1)
		s.Enqueue(testMessage(10+i, []byte("next"), b), func(r store.Result, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("write after the failure: %v", err)
				return
			}
			mu.Lock()
			ok = append(ok, r.Sequence)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, seq := range ok {
		if seq <= r1.Sequence+1 {
			t.Errorf("sequence %d reused", seq)
		}
	}
	es, err := s.Pending(ctx, b, 0, 100, 1<<20)
	if err != nil || len(es) != 5 {
		t.Errorf("mailbox after the failure: %d entries, %v; want 5", len(es), err)
	}
}

func TestMalformedRowRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := openTest(t, path)
	b := wire.DeviceID{2}
	if _, err := store.EnqueueWait(ctx, s, testMessage(1, []byte("x"), b)); err != nil {
		t.Fatal(err)
	}
	// Damage the row behind the store's back.
	if _, err := s.db.Exec(`UPDATE messages SET sender = x'0102'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pending(ctx, b, 0, 10, 1<<20); err == nil {
		t.Error("a row with a 2-byte sender ID was returned")
	}
}

func FuzzEntryFromRow(f *testing.F) {
	id := make([]byte, wire.IDSize)
	f.Add(int64(1), id, id, []byte("g"), int64(1700000000000), []byte("payload"))
	f.Add(int64(0), id, id, []byte("g"), int64(0), []byte("p"))
	f.Add(int64(5), id[:15], id, []byte{}, int64(-1), []byte{})
	f.Fuzz(func(t *testing.T, seq int64, messageID, sender, group []byte, sentAt int64, payload []byte) {
		e, err := entryFromRow(seq, messageID, sender, group, sentAt, payload)
		if err != nil {
			return
		}
		// What is accepted is exactly what this package writes.
		if seq <= 0 || len(messageID) != wire.IDSize || len(sender) != wire.IDSize ||
			len(group) < 1 || len(group) > wire.MaxGroupIDSize || len(payload) < 1 || sentAt < 0 {
			t.Fatalf("accepted a row this package never writes: seq %d, ID %d bytes, sender %d bytes, group %d bytes, payload %d bytes",
				seq, len(messageID), len(sender), len(group), len(payload))
		}
		if e.Sequence != uint64(seq) || !bytes.Equal(e.MessageID[:], messageID) || !bytes.Equal(e.Sender[:], sender) ||
			!bytes.Equal(e.GroupID, group) || e.SentAt.UnixMilli() != sentAt || !bytes.Equal(e.Payload, payload) {
			t.Fatal("entry does not carry the row's values")
		}
	})
}

func FuzzRecipientsFromRow(f *testing.F) {
	f.Add(recipientsRow([]wire.DeviceID{{1}, {2}}))
	f.Add(recipientsRow([]wire.DeviceID{{2}, {1}}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := recipientsFromRow(b)
		if err != nil {
			return
		}
		// What is accepted is exactly what this package writes.
		if !bytes.Equal(recipientsRow(ids), b) {
			t.Fatal("recipients do not re-encode to the stored bytes")
		}
		for i := 1; i < len(ids); i++ {
			if bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
				t.Fatal("accepted recipients out of order")
			}
		}
	})
}

func FuzzNoticeFromRow(f *testing.F) {
	id := make([]byte, wire.IDSize)
	f.Add(id, id)
	f.Add(id[:3], id)
	f.Fuzz(func(t *testing.T, messageID, recipient []byte) {
		n, err := noticeFromRow(wire.DeviceID{1}, messageID, recipient)
		if err != nil {
			return
		}
		if !bytes.Equal(n.MessageID[:], messageID) || !bytes.Equal(n.Recipient[:], recipient) {
			t.Fatal("notice does not carry the row's values")
		}
	})
}

// BenchmarkEnqueue measures durable Sends of 1 KB to one recipient from many
// goroutines at once, as many connections would send: group commit shares each
// fsync among the Sends queued meanwhile.
func BenchmarkEnqueue(b *testing.B) {
	for _, recipients := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("recipients=%d", recipients), func(b *testing.B) {
			s := openTest(b, filepath.Join(b.TempDir(), FileName))
			s.SetQuotas(store.Quotas{MailboxEntries: 1 << 30, MailboxBytes: 1 << 40})
			var rs []wire.DeviceID
			for i := range recipients {
				rs = append(rs, wire.DeviceID{0: 0xaa, 14: byte(i >> 8), 15: byte(i)})
			}
			payload := bytes.Repeat([]byte{0x5a}, 1024)
			var (
				mu sync.Mutex
				n  int
			)
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					n++
					i := n
					mu.Unlock()
					if _, err := store.EnqueueWait(ctx, s, testMessage(i, payload, rs...)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*recipients)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkAck measures acknowledging single messages from many goroutines.
func BenchmarkAck(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), FileName))
	s.SetQuotas(store.Quotas{MailboxEntries: 1 << 30, MailboxBytes: 1 << 40})
	d := wire.DeviceID{2}
	payload := bytes.Repeat([]byte{0x5a}, 1024)
	seqs := make([]uint64, b.N)
	for i := range b.N {
		r, err := store.EnqueueWait(ctx, s, testMessage(i, payload, d))
		if err != nil {
			b.Fatal(err)
		}
		seqs[i] = r.Sequence
	}
	var (
		mu   sync.Mutex
		next int
	)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			seq := seqs[next]
			next++
			mu.Unlock()
			if err := store.AckWait(ctx, s, d, []uint64{seq}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if es, _ := s.Pending(ctx, d, 0, 10, 1<<20); len(es) != 0 {
		b.Errorf("%d entries left", len(es))
	}
}
