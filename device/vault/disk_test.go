package vault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestPermissions(t *testing.T) {
	v, dir := newTestVault(t)
	put(t, v, "b", "k", "v") // the WAL exists now
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	for _, want := range []string{keyName, dbName, dbName + "-wal"} {
		if !names[want] {
			t.Errorf("no %s in the vault directory (have %v)", want, names)
		}
	}
}

// TestPragmas checks the settings the package doc promises: a durable commit
// (WAL with synchronous=FULL) and zeroed deleted content.
func TestPragmas(t *testing.T) {
	v, _ := newTestVault(t)
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"},
		{"secure_delete", "1"},
		{"temp_store", "2"},
	} {
		// Several connections may be open; check each a transaction gets.
		for range 3 {
			var got string
			if err := v.db.QueryRow("PRAGMA " + tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
			}
		}
	}
}

// TestNothingReadableOnDisk writes recognisable bucket names, keys and values and
// checks that none of them appears in any file of the vault: the database, its
// write-ahead log (while open, before any checkpoint), or the key file.
func TestNothingReadableOnDisk(t *testing.T) {
	v, dir := newTestVault(t)
	bucket := "CANARY-BUCKET-f1d2"
	key := []byte("CANARY-KEY-9a8b7c")
	value := []byte("CANARY-VALUE-the launch code is 0000")
	if err := v.Update(func(tx *Tx) error { return tx.Put(bucket, key, value) }); err != nil {
		t.Fatal(err)
	}
	fs := files(t, dir)
	if len(fs[dbName+"-wal"]) == 0 {
		t.Fatal("no write-ahead log to scan")
	}
	needles := [][]byte{[]byte(bucket), key, value, []byte("CANARY"), bytes.Clone(v.master)}
	assertAbsent(t, dir, needles...)
	v.Close()
	assertAbsent(t, dir, needles...)
}

// sealedOf returns the sealed column of an entry, as stored on disk.
func sealedOf(t testing.TB, v *Vault, bucket, key string) []byte {
	t.Helper()
	var sealed []byte
	if err := v.db.QueryRow(`SELECT sealed FROM entries WHERE key_tag = ?`, v.keyTag(bucket, []byte(key))).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	return sealed
}

// TestRemovedDataLeavesDisk checks that the ciphertext of a deleted or
// overwritten entry does not remain in the database or its log: the plaintext is
// never on disk (TestNothingReadableOnDisk), and the ciphertext must not outlive
// the key being disclosed later either.
func TestRemovedDataLeavesDisk(t *testing.T) {
	v, dir := newTestVault(t)
	filler := bytes.Repeat([]byte("f"), 3000)
	for i := range 20 {
		put(t, v, "b", fmt.Sprint("filler", i), string(filler))
	}
	put(t, v, "b", "deleted", "secret to delete")
	put(t, v, "b", "overwritten", "secret to overwrite")
	put(t, v, "big", "deleted", strings.Repeat("large secret ", 10000)) // overflow pages
	gone := [][]byte{sealedOf(t, v, "b", "deleted"), sealedOf(t, v, "b", "overwritten"), sealedOf(t, v, "big", "deleted")}
	for i, s := range gone {
		gone[i] = s[:64] // nonce and the start of the ciphertext
	}
	kept := sealedOf(t, v, "b", "filler7")[:64]

	if err := v.Update(func(tx *Tx) error {
		if err := tx.Delete("b", []byte("deleted")); err != nil {
			return err
		}
		if err := tx.Delete("big", []byte("deleted")); err != nil {
			return err
		}
		return tx.Put("b", []byte("overwritten"), []byte("new value"))
	}); err != nil {
		t.Fatal(err)
	}
	// The scan runs right after Update returns, with the vault still open.
	assertAbsent(t, dir, gone...)
	var found bool
	for _, b := range files(t, dir) {
		found = found || bytes.Contains(b, kept)
	}
	if !found {
		t.Fatal("the scan does not find a live entry's ciphertext either: it proves nothing")
	}
	v.Close()
	assertAbsent(t, dir, gone...)
}

// TestMovedRows checks that the additional data binds each sealed value to its
// tags: rows swapped, moved to another key or to another bucket fail to open.
func TestMovedRows(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tamper     []string
		get        [2]string // the bucket and key whose Get must fail
		listBucket string    // the bucket whose List must fail
	}{
		{"sealed values swapped", []string{
			`UPDATE entries SET sealed = ?4 WHERE key_tag = ?1`,
			`UPDATE entries SET sealed = ?3 WHERE key_tag = ?2`,
		}, [2]string{"b", "k1"}, "b"},
		{"key tags swapped", []string{
			`UPDATE entries SET key_tag = x'00' WHERE key_tag = ?1`,
			`UPDATE entries SET key_tag = ?1 WHERE key_tag = ?2`,
			`UPDATE entries SET key_tag = ?2 WHERE key_tag = x'00'`,
		}, [2]string{"b", "k2"}, "b"},
		{"bucket tag changed", []string{
			`UPDATE entries SET bucket_tag = ?5 WHERE key_tag = ?1`,
		}, [2]string{"b", "k1"}, "c"},
		{"row moved to another bucket", []string{
			`UPDATE entries SET bucket_tag = ?5, key_tag = ?6 WHERE key_tag = ?1`,
		}, [2]string{"c", "k1"}, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := newTestVault(t)
			put(t, v, "b", "k1", "one")
			put(t, v, "b", "k2", "two")
			put(t, v, "c", "other", "three")
			kt1, kt2 := v.keyTag("b", []byte("k1")), v.keyTag("b", []byte("k2"))
			s1, s2 := sealedOf(t, v, "b", "k1"), sealedOf(t, v, "b", "k2")
			for _, q := range tc.tamper {
				res, err := v.db.Exec(q, kt1, kt2, s1, s2, v.bucketTag("c"), v.keyTag("c", []byte("k1")))
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := res.RowsAffected(); n != 1 {
					t.Fatalf("%s changed %d rows", q, n)
				}
			}
			if _, err := get(t, v, tc.get[0], tc.get[1]); !errors.Is(err, ErrDamaged) {
				t.Fatalf("Get of the tampered entry: %v, want ErrDamaged", err)
			}
			err := v.View(func(tx *Tx) error { _, err := tx.List(tc.listBucket); return err })
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("List of the tampered bucket: %v, want ErrDamaged", err)
			}
			// Entries nobody touched still open.
			mustGet(t, v, "c", "other", "three")
		})
	}
}
