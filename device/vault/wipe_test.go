package vault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWipe(t *testing.T) {
	t.Run("closed vault", func(t *testing.T) {
		v, dir := newTestVault(t)
		put(t, v, "b", "k", "v")
		v.Close()
		if err := Wipe(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("directory still there: %v", err)
		}
		if Exists(dir) {
			t.Fatal("Exists after Wipe")
		}
		if _, err := Open(dir, pass); !errors.Is(err, ErrNoVault) {
			t.Fatalf("Open after Wipe: %v", err)
		}
	})
	t.Run("open vault", func(t *testing.T) {
		v, dir := newTestVault(t)
		put(t, v, "b", "k", "v")
		if err := Wipe(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("directory still there: %v", err)
		}
		if err := v.Update(func(tx *Tx) error { return tx.Put("b", []byte("k2"), nil) }); !errors.Is(err, ErrClosed) {
			t.Fatalf("Update on a wiped vault: %v", err)
		}
		if _, err := get(t, v, "b", "k"); !errors.Is(err, ErrClosed) {
			t.Fatalf("View on a wiped vault: %v", err)
		}
		v.Close()
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("Close after Wipe recreated files")
		}
		if _, err := Open(dir, pass); !errors.Is(err, ErrNoVault) {
			t.Fatalf("Open after Wipe: %v", err)
		}
	})
	t.Run("key file overwritten before removal", func(t *testing.T) {
		v, dir := newTestVault(t)
		v.Close()
		// A second name for the key file's contents shows what Wipe did to them.
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Link(filepath.Join(dir, keyName), link); err != nil {
			t.Fatal(err)
		}
		if err := Wipe(dir); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(link)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != keyFileSize || !bytes.Equal(b, make([]byte, keyFileSize)) {
			t.Fatalf("key file contents after Wipe: %x", b)
		}
	})
	t.Run("other files kept", func(t *testing.T) {
		v, dir := newTestVault(t)
		v.Close()
		other := filepath.Join(dir, "not-the-vault")
		if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Wipe(dir); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 || ents[0].Name() != "not-the-vault" {
			t.Fatalf("left %v, %v", ents, err)
		}
	})
	t.Run("no vault", func(t *testing.T) {
		if err := Wipe(filepath.Join(t.TempDir(), "none")); err != nil {
			t.Fatalf("Wipe of nothing: %v", err)
		}
	})
	t.Run("new vault after wipe", func(t *testing.T) {
		v, dir := newTestVault(t)
		put(t, v, "b", "k", "v")
		if err := Wipe(dir); err != nil {
			t.Fatal(err)
		}
		v2, err := Create(dir, pass, TestKDF(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		defer v2.Close()
		if _, err := get(t, v2, "b", "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a new vault holds the wiped one's data: %v", err)
		}
	})
}
