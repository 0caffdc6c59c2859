package vault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var pass = []byte("correct horse battery staple")

// newTestVault creates a vault with cheap KDF parameters in a fresh directory.
func newTestVault(t testing.TB) (*Vault, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vault")
	v, err := Create(dir, pass, TestKDF(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, dir
}

func put(t testing.TB, v *Vault, bucket, key, value string) {
	t.Helper()
	if err := v.Update(func(tx *Tx) error { return tx.Put(bucket, []byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, v *Vault, bucket, key string) (string, error) {
	t.Helper()
	var got []byte
	err := v.View(func(tx *Tx) error {
		var err error
		got, err = tx.Get(bucket, []byte(key))
		return err
	})
	return string(got), err
}

func mustGet(t testing.TB, v *Vault, bucket, key, want string) {
	t.Helper()
	got, err := get(t, v, bucket, key)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", bucket, key, err)
	}
	if got != want {
		t.Fatalf("Get %s/%s = %q, want %q", bucket, key, got, want)
	}
}

func list(t testing.TB, v *Vault, bucket string) []Entry {
	t.Helper()
	var es []Entry
	if err := v.View(func(tx *Tx) error {
		var err error
		es, err = tx.List(bucket)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// files returns the contents of every file in dir by name.
func files(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

// assertAbsent fails if any file in dir contains any of needles.
func assertAbsent(t testing.TB, dir string, needles ...[]byte) {
	t.Helper()
	for name, b := range files(t, dir) {
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s contains %q (%d bytes)", name, n[:min(len(n), 12)], len(n))
			}
		}
	}
}

func TestCreateOpenReopen(t *testing.T) {
	v, dir := newTestVault(t)
	if !Exists(dir) {
		t.Fatal("Exists is false after Create")
	}
	put(t, v, "messages", "m1", "hello")
	put(t, v, "messages", "m2", "world")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	v2, err := Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	mustGet(t, v2, "messages", "m1", "hello")
	mustGet(t, v2, "messages", "m2", "world")
}

func TestCreateRefusesExisting(t *testing.T) {
	_, dir := newTestVault(t)
	if _, err := Create(dir, []byte("other"), TestKDF(), rand.Reader); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a vault: %v", err)
	}
	if _, err := Open(dir, pass); err != nil {
		t.Fatalf("the first vault no longer opens: %v", err)
	}
}

func TestCreateRejects(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	for _, tc := range []struct {
		name string
		pass []byte
		p    KDFParams
	}{
		{"empty passphrase", nil, TestKDF()},
		{"zero time", pass, KDFParams{Time: 0, MemoryKiB: 64, Threads: 1}},
		{"zero threads", pass, KDFParams{Time: 1, MemoryKiB: 64, Threads: 0}},
		{"too little memory", pass, KDFParams{Time: 1, MemoryKiB: 7, Threads: 1}},
		{"too much memory", pass, KDFParams{Time: 1, MemoryKiB: maxMemoryKiB + 1, Threads: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, err := Create(dir, tc.pass, tc.p, rand.Reader); err == nil {
				v.Close()
				t.Fatal("Create accepted")
			}
			if Exists(dir) {
				t.Fatal("a refused Create left a vault")
			}
		})
	}
	// A failing random source leaves nothing behind.
	if _, err := Create(dir, pass, TestKDF(), bytes.NewReader(make([]byte, 40))); err == nil {
		t.Fatal("Create with too little randomness succeeded")
	}
	if Exists(dir) {
		t.Fatal("a failed Create left a vault")
	}
}

func TestCreateAfterInterruptedCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A database without a key file is what an interrupted Create or Wipe leaves.
	for _, name := range []string{dbName, dbName + "-wal", keyTmpName} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("leftover"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, pass); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open without a key file: %v", err)
	}
	v, err := Create(dir, pass, TestKDF(), rand.Reader)
	if err != nil {
		t.Fatalf("Create over leftovers: %v", err)
	}
	defer v.Close()
	put(t, v, "b", "k", "v")
	mustGet(t, v, "b", "k", "v")
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none"), pass); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open of a missing directory: %v", err)
	}
	if _, err := Open(t.TempDir(), pass); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open of an empty directory: %v", err)
	}
	v, dir := newTestVault(t)
	v.Close()
	if _, err := Open(dir, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open with a wrong passphrase: %v", err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open with an empty passphrase: %v", err)
	}
	for _, garbage := range [][]byte{nil, bytes.Repeat([]byte("not a database "), 100)} {
		if err := os.WriteFile(filepath.Join(dir, dbName), garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, pass); !errors.Is(err, ErrDamaged) {
			t.Fatalf("Open with %d bytes of garbage as the database: %v", len(garbage), err)
		}
	}
	if err := os.Remove(filepath.Join(dir, dbName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, pass); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open without a database: %v", err)
	}
}

// TestDatabaseOfAnotherVault checks that a database copied from another vault is
// refused, rather than appearing empty or failing entry by entry.
func TestDatabaseOfAnotherVault(t *testing.T) {
	a, dirA := newTestVault(t)
	b, dirB := newTestVault(t)
	put(t, a, "b", "k", "a's")
	put(t, b, "b", "k", "b's")
	a.Close()
	b.Close()
	db, err := os.ReadFile(filepath.Join(dirB, dbName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirA, dbName), db, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dirA, pass); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with another vault's database: %v", err)
	}
}

func TestEntries(t *testing.T) {
	v, _ := newTestVault(t)
	if err := v.Update(func(tx *Tx) error {
		for _, k := range []string{"c", "a", "b", ""} {
			if err := tx.Put("letters", []byte(k), []byte("value of "+k)); err != nil {
				return err
			}
		}
		if err := tx.Put("other", []byte("a"), []byte("other a")); err != nil {
			return err
		}
		// A value written in a transaction is visible in it.
		got, err := tx.Get("letters", []byte("c"))
		if err != nil || string(got) != "value of c" {
			return fmt.Errorf("Get in the writing transaction: %q %v", got, err)
		}
		return tx.Put("letters", []byte("empty"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, v, "letters", "a", "value of a")
	mustGet(t, v, "letters", "", "value of ")
	mustGet(t, v, "other", "a", "other a")
	mustGet(t, v, "letters", "empty", "")
	if _, err := get(t, v, "letters", "d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if _, err := get(t, v, "nobucket", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get in a missing bucket: %v", err)
	}

	es := list(t, v, "letters")
	var keys []string
	for _, e := range es {
		keys = append(keys, string(e.Key))
	}
	if got := strings.Join(keys, ","); got != ",a,b,c,empty" {
		t.Fatalf("List keys %q, want sorted \",a,b,c,empty\"", got)
	}
	if string(es[2].Value) != "value of b" {
		t.Fatalf("List value %q", es[2].Value)
	}
	// Appending to a listed key does not change its value.
	_ = append(es[1].Key, "XXXXXXXX"...)
	if string(es[1].Value) != "value of a" {
		t.Fatalf("appending to a key changed the value: %q", es[1].Value)
	}
	if len(list(t, v, "nobucket")) != 0 {
		t.Fatal("List of a missing bucket is not empty")
	}

	// Overwrite and delete.
	put(t, v, "letters", "a", "new a")
	mustGet(t, v, "letters", "a", "new a")
	if err := v.Update(func(tx *Tx) error {
		if err := tx.Delete("letters", []byte("a")); err != nil {
			return err
		}
		return tx.Delete("letters", []byte("never there"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, v, "letters", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	mustGet(t, v, "other", "a", "other a")
	if n := len(list(t, v, "letters")); n != 4 {
		t.Fatalf("%d entries after delete, want 4", n)
	}
}

func TestBinaryKeysAndLargeValues(t *testing.T) {
	v, dir := newTestVault(t)
	keys := [][]byte{{0}, {0, 0}, {0xff}, {0, 1}, {}}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, spans overflow pages
	if err := v.Update(func(tx *Tx) error {
		for i, k := range keys {
			if err := tx.Put("bin", k, []byte{byte(i)}); err != nil {
				return err
			}
		}
		return tx.Put("big", []byte("k"), big)
	}); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v, err := Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	es := list(t, v, "bin")
	want := [][]byte{{}, {0}, {0, 0}, {0, 1}, {0xff}}
	if len(es) != len(want) {
		t.Fatalf("%d entries", len(es))
	}
	for i := range want {
		if !bytes.Equal(es[i].Key, want[i]) {
			t.Fatalf("entry %d key %x, want %x", i, es[i].Key, want[i])
		}
	}
	got, err := get(t, v, "big", "k")
	if err != nil || got != string(big) {
		t.Fatalf("large value: %d bytes, %v", len(got), err)
	}
}

func TestBucketNames(t *testing.T) {
	v, _ := newTestVault(t)
	err := v.Update(func(tx *Tx) error {
		for _, b := range []string{"", "a\x00b"} {
			if err := tx.Put(b, []byte("k"), nil); err == nil {
				return fmt.Errorf("Put in bucket %q accepted", b)
			}
			if _, err := tx.Get(b, []byte("k")); err == nil || errors.Is(err, ErrNotFound) {
				return fmt.Errorf("Get in bucket %q: %v", b, err)
			}
			if _, err := tx.List(b); err == nil {
				return fmt.Errorf("List of bucket %q accepted", b)
			}
			if err := tx.Delete(b, []byte("k")); err == nil {
				return fmt.Errorf("Delete in bucket %q accepted", b)
			}
		}
		// Buckets whose names are prefixes of each other stay apart.
		if err := tx.Put("ab", []byte("c"), []byte("1")); err != nil {
			return err
		}
		return tx.Put("a", []byte("bc"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, v, "ab", "c", "1")
	mustGet(t, v, "a", "bc", "2")
	if len(list(t, v, "a")) != 1 || len(list(t, v, "ab")) != 1 {
		t.Fatal("prefix buckets share entries")
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	v, dir := newTestVault(t)
	put(t, v, "b", "keep", "original")
	put(t, v, "b", "doomed", "still here")
	boom := errors.New("boom")
	err := v.Update(func(tx *Tx) error {
		if err := tx.Put("b", []byte("new"), []byte("x")); err != nil {
			return err
		}
		if err := tx.Put("b", []byte("keep"), []byte("changed")); err != nil {
			return err
		}
		if err := tx.Delete("b", []byte("doomed")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	check := func(v *Vault) {
		t.Helper()
		mustGet(t, v, "b", "keep", "original")
		mustGet(t, v, "b", "doomed", "still here")
		if _, err := get(t, v, "b", "new"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a put from a failed Update is visible: %v", err)
		}
	}
	check(v)

	// A panic in fn rolls back too, and the vault stays usable.
	func() {
		defer func() { recover() }()
		v.Update(func(tx *Tx) error {
			tx.Put("b", []byte("new"), []byte("x"))
			panic("fn panics")
		})
	}()
	check(v)
	put(t, v, "b", "after", "ok")

	v.Close()
	v2, err := Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	check(v2)
	mustGet(t, v2, "b", "after", "ok")
}

func TestTxRules(t *testing.T) {
	v, _ := newTestVault(t)
	put(t, v, "b", "k", "v")
	err := v.View(func(tx *Tx) error {
		if err := tx.Put("b", []byte("k"), []byte("w")); err == nil {
			return errors.New("Put in View accepted")
		}
		if err := tx.Delete("b", []byte("k")); err == nil {
			return errors.New("Delete in View accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, v, "b", "k", "v")

	var kept *Tx
	v.Update(func(tx *Tx) error { kept = tx; return nil })
	if err := kept.Put("b", []byte("late"), nil); err == nil {
		t.Fatal("Put after Update returned was accepted")
	}
	if _, err := kept.Get("b", []byte("k")); err == nil {
		t.Fatal("Get after Update returned was accepted")
	}
	if _, err := get(t, v, "b", "late"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a late Put was written")
	}
	boom := errors.New("boom")
	if err := v.View(func(*Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("View returned %v, want fn's error", err)
	}
}

func TestChangePassphrase(t *testing.T) {
	v, dir := newTestVault(t)
	put(t, v, "b", "k", "v")
	newPass := []byte("a new passphrase")
	if err := v.ChangePassphrase([]byte("wrong"), newPass, TestKDF()); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase with a wrong old passphrase: %v", err)
	}
	if err := v.ChangePassphrase(pass, nil, TestKDF()); err == nil {
		t.Fatal("ChangePassphrase to an empty passphrase accepted")
	}
	if err := v.ChangePassphrase(pass, newPass, KDFParams{Time: 2, MemoryKiB: 128, Threads: 2}); err != nil {
		t.Fatal(err)
	}
	// The open vault keeps working.
	put(t, v, "b", "k2", "v2")
	v.Close()

	if _, err := Open(dir, pass); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open with the old passphrase: %v", err)
	}
	v2, err := Open(dir, newPass)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	mustGet(t, v2, "b", "k", "v")
	mustGet(t, v2, "b", "k2", "v2")
	data, err := os.ReadFile(filepath.Join(dir, keyName))
	if err != nil {
		t.Fatal(err)
	}
	kf, err := parseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if kf.params != (KDFParams{Time: 2, MemoryKiB: 128, Threads: 2}) {
		t.Fatalf("key file parameters %+v", kf.params)
	}
	if _, err := os.Stat(filepath.Join(dir, keyTmpName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a temporary key file was left behind")
	}
}

func TestConcurrentUse(t *testing.T) {
	v, dir := newTestVault(t)
	const writers, readers, each = 6, 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := v.Update(func(tx *Tx) error {
					// A read-modify-write: the counter ends at writers*each
					// only if Updates do not interleave.
					n := 0
					if b, err := tx.Get("counter", []byte("n")); err == nil {
						fmt.Sscan(string(b), &n)
					} else if !errors.Is(err, ErrNotFound) {
						return err
					}
					if err := tx.Put("counter", []byte("n"), []byte(fmt.Sprint(n+1))); err != nil {
						return err
					}
					k := []byte(fmt.Sprintf("w%d-%03d", w, i))
					if err := tx.Put("items", k, k); err != nil {
						return err
					}
					if i%3 == 0 {
						return tx.Delete("items", k)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := v.View(func(tx *Tx) error {
					es, err := tx.List("items")
					if err != nil {
						return err
					}
					for _, e := range es {
						if !bytes.Equal(e.Key, e.Value) {
							return fmt.Errorf("entry %q has value %q", e.Key, e.Value)
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v.Close()
	v2, err := Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	mustGet(t, v2, "counter", "n", fmt.Sprint(writers*each))
	if n := len(list(t, v2, "items")); n != writers*(each-each/3) {
		t.Fatalf("%d items, want %d", n, writers*(each-each/3))
	}
}

// TestCloseWaits checks that Close, called while transactions run, waits for
// them and that they end cleanly.
func TestCloseWaits(t *testing.T) {
	v, dir := newTestVault(t)
	started := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- v.Update(func(tx *Tx) error {
			close(started)
			<-release
			return tx.Put("b", []byte("k"), []byte("written before close"))
		})
	}()
	<-started
	closed := make(chan error)
	go func() { closed <- v.Close() }()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Update during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	v2, err := Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	mustGet(t, v2, "b", "k", "written before close")
}

func BenchmarkOpen(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "vault")
	v, err := Create(dir, pass, DefaultKDF(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	v.Close()
	b.ReportAllocs()
	for b.Loop() {
		v, err := Open(dir, pass)
		if err != nil {
			b.Fatal(err)
		}
		v.Close()
	}
}

func BenchmarkUpdate(b *testing.B) {
	v, _ := newTestVault(b)
	value := bytes.Repeat([]byte("m"), 1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := v.Update(func(tx *Tx) error { return tx.Put("messages", []byte(fmt.Sprint(i)), value) }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	v, _ := newTestVault(b)
	put(b, v, "messages", "k", strings.Repeat("m", 1024))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.View(func(tx *Tx) error { _, err := tx.Get("messages", []byte("k")); return err }); err != nil {
			b.Fatal(err)
		}
	}
}
