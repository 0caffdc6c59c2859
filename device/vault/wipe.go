package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Wipe destroys the vault in dir. It first overwrites the key file with zeros,
// syncs it to disk and removes it, which leaves the database unreadable by anyone;
// then it closes any Vault open on dir in this process (waiting for their
// transactions in progress, after which they return ErrClosed), removes the
// database files, and removes dir if nothing else is left in it. Wipe works
// whether or not a Vault is open on dir (callers Close first when they can); it
// must not be called from inside a transaction of a Vault on dir. Wiping a
// directory without a vault does nothing.
func Wipe(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("vault: wiping: %w", err)
	}
	var errs []error
	for _, name := range []string{keyName, keyTmpName} {
		if err := destroy(filepath.Join(abs, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := syncDir(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, v := range openOn(abs) {
		v.Close()
	}
	for _, name := range dbNames {
		if err := os.Remove(filepath.Join(abs, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) == 0 {
		if err := os.Remove(abs); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vault: wiping: %w", err)
	}
	return nil
}

// destroy overwrites a regular file with zeros, syncs it and removes it. A missing
// file is not an error; anything else in its place is removed without writing.
func destroy(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		if err := overwrite(path, fi.Size()); err != nil {
			// Removing the file is still better than leaving it.
			return errors.Join(err, os.Remove(path))
		}
	}
	return os.Remove(path)
}

func overwrite(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	zeros := make([]byte, 4096)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}
