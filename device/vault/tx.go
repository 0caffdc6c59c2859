package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
)

// Tx is one transaction, given to the function passed to Update or View. It is
// valid only until that function returns and is not safe for concurrent use.
type Tx struct {
	v       *Vault
	tx      *sql.Tx
	write   bool // from Update
	done    bool // the function has returned
	removed bool // a row was deleted or overwritten: scrub the log after commit
}

// Entry is one key and its value, as returned by Tx.List.
type Entry struct {
	Key, Value []byte
}

var (
	errTxDone   = errors.New("vault: transaction used after its function returned")
	errReadOnly = errors.New("vault: write in a read-only transaction")
)

func (tx *Tx) usable(write bool) error {
	switch {
	case tx.done:
		return errTxDone
	case write && !tx.write:
		return errReadOnly
	}
	return nil
}

// checkBucket refuses bucket names that would make the tag encoding ambiguous.
func checkBucket(bucket string) error {
	if bucket == "" || strings.IndexByte(bucket, 0) >= 0 {
		return errors.New("vault: a bucket name must be non-empty and must not contain NUL")
	}
	return nil
}

// bucketTag returns HMAC-SHA256(k_tag, bucket).
func (v *Vault) bucketTag(bucket string) []byte {
	m := hmac.New(sha256.New, v.tagKey)
	m.Write([]byte(bucket))
	return m.Sum(nil)
}

// keyTag returns HMAC-SHA256(k_tag, bucket || 0x00 || key). Bucket names hold no
// NUL, so the input is unambiguous.
func (v *Vault) keyTag(bucket string, key []byte) []byte {
	m := hmac.New(sha256.New, v.tagKey)
	m.Write([]byte(bucket))
	m.Write([]byte{0})
	m.Write(key)
	return m.Sum(nil)
}

// sealRow returns the sealed column of an entry.
func (v *Vault) sealRow(bucketTag, keyTag []byte, bucket string, key, value []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(bucket)) })
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key) })
	b.AddBytes(value)
	pt, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("vault: entry too large: %w", err)
	}
	defer clear(pt)
	ns := chacha20poly1305.NonceSizeX
	out := make([]byte, ns, ns+len(pt)+chacha20poly1305.Overhead)
	if err := v.randRead(out[:ns]); err != nil {
		return nil, err
	}
	return v.seal.Seal(out, out[:ns], pt, rowAAD(bucketTag, keyTag)), nil
}

func rowAAD(bucketTag, keyTag []byte) []byte {
	return append(bytes.Clone(bucketTag), keyTag...)
}

// openRow opens a sealed column stored under the given tags and returns the
// entry's bucket, key and value.
func (v *Vault) openRow(bucketTag, keyTag, sealed []byte) (bucket string, key, value []byte, err error) {
	ns := chacha20poly1305.NonceSizeX
	if len(sealed) < ns+chacha20poly1305.Overhead {
		return "", nil, nil, damaged("an entry failed authentication")
	}
	pt, err := v.seal.Open(nil, sealed[:ns], sealed[ns:], rowAAD(bucketTag, keyTag))
	if err != nil {
		return "", nil, nil, damaged("an entry failed authentication")
	}
	return decodeEntry(pt)
}

// decodeEntry splits a row's plaintext into bucket, key and value. Key and value
// do not share capacity, so appending to one cannot change the other.
func decodeEntry(pt []byte) (bucket string, key, value []byte, err error) {
	s := cryptobyte.String(pt)
	var bn, kn uint32
	var b, k []byte
	if !s.ReadUint32(&bn) || !s.ReadBytes(&b, int(bn)) || !s.ReadUint32(&kn) || !s.ReadBytes(&k, int(kn)) {
		return "", nil, nil, damaged("an entry is malformed")
	}
	return string(b), k[:len(k):len(k)], []byte(s), nil
}

// openEntry opens a row found under keyTag and checks that it is the entry for
// bucket and key: a row moved from elsewhere does not open.
func (tx *Tx) openEntry(bucket string, bucketTag, keyTag, rowBucketTag, sealed []byte) (key, value []byte, err error) {
	if !hmac.Equal(rowBucketTag, bucketTag) {
		return nil, nil, damaged("an entry is in the wrong bucket")
	}
	b, k, val, err := tx.v.openRow(bucketTag, keyTag, sealed)
	if err != nil {
		return nil, nil, err
	}
	if b != bucket || !hmac.Equal(tx.v.keyTag(b, k), keyTag) {
		return nil, nil, damaged("an entry is stored under the wrong tag")
	}
	return k, val, nil
}

// Get returns the value under key in bucket, or ErrNotFound.
func (tx *Tx) Get(bucket string, key []byte) ([]byte, error) {
	if err := tx.usable(false); err != nil {
		return nil, err
	}
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	bt, kt := tx.v.bucketTag(bucket), tx.v.keyTag(bucket, key)
	var rowBT, sealed []byte
	err := tx.tx.QueryRow(`SELECT bucket_tag, sealed FROM entries WHERE key_tag = ?`, kt).Scan(&rowBT, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, dbErr(err)
	}
	_, value, err := tx.openEntry(bucket, bt, kt, rowBT, sealed)
	return value, err
}

// Put stores value under key in bucket, replacing any value there. It is an error
// in a View transaction.
func (tx *Tx) Put(bucket string, key, value []byte) error {
	if err := tx.usable(true); err != nil {
		return err
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	bt, kt := tx.v.bucketTag(bucket), tx.v.keyTag(bucket, key)
	sealed, err := tx.v.sealRow(bt, kt, bucket, key, value)
	if err != nil {
		return err
	}
	res, err := tx.tx.Exec(`UPDATE entries SET bucket_tag = ?, sealed = ? WHERE key_tag = ?`, bt, sealed, kt)
	if err != nil {
		return dbErr(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbErr(err)
	} else if n > 0 {
		tx.removed = true
		return nil
	}
	if _, err := tx.tx.Exec(`INSERT INTO entries (key_tag, bucket_tag, sealed) VALUES (?, ?, ?)`, kt, bt, sealed); err != nil {
		return dbErr(err)
	}
	return nil
}

// Delete removes key from bucket. Deleting a key that is not there is not an
// error. It is an error in a View transaction.
func (tx *Tx) Delete(bucket string, key []byte) error {
	if err := tx.usable(true); err != nil {
		return err
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	res, err := tx.tx.Exec(`DELETE FROM entries WHERE key_tag = ?`, tx.v.keyTag(bucket, key))
	if err != nil {
		return dbErr(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbErr(err)
	} else if n > 0 {
		tx.removed = true
	}
	return nil
}

// List returns every entry of bucket, sorted by key (bytes.Compare). An empty or
// unknown bucket has no entries.
func (tx *Tx) List(bucket string) ([]Entry, error) {
	if err := tx.usable(false); err != nil {
		return nil, err
	}
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	bt := tx.v.bucketTag(bucket)
	rows, err := tx.tx.Query(`SELECT key_tag, bucket_tag, sealed FROM entries WHERE bucket_tag = ?`, bt)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var entries []Entry
	for rows.Next() {
		var kt, rowBT, sealed []byte
		if err := rows.Scan(&kt, &rowBT, &sealed); err != nil {
			return nil, dbErr(err)
		}
		k, val, err := tx.openEntry(bucket, bt, kt, rowBT, sealed)
		if err != nil {
			return nil, err
		}
		entries = append(entries, Entry{Key: k, Value: val})
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return bytes.Compare(a.Key, b.Key) })
	return entries, nil
}
