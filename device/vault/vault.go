// Package vault is the Mahfooz device's encrypted store at rest.
//
// A vault is a directory holding two files (the directory is 0700, the files 0600):
//
//	vault.key  the random 32-byte master key, sealed with XChaCha20-Poly1305 under a
//	           key derived from the passphrase by Argon2id (see the format in keyfile.go)
//	vault.db   an SQLite database (WAL, synchronous=FULL, secure_delete=ON) of
//	           sealed entries
//
// Entries are values under a key inside a named bucket. Every row of the database
// is (bucket_tag, key_tag, sealed) with
//
//	bucket_tag = HMAC-SHA256(k_tag, bucket)
//	key_tag    = HMAC-SHA256(k_tag, bucket || 0x00 || key)
//	sealed     = nonce || XChaCha20-Poly1305(k_enc, nonce,
//	                 uint32 len(bucket) || bucket || uint32 len(key) || key || value,
//	                 additional data = bucket_tag || key_tag)
//
// where k_tag and k_enc come from the master key by HKDF-SHA256 and the nonce is
// random. Without the master key nothing in the file is readable, and rows can be
// linked only by bucket. A row moved to another key or bucket fails to open.
// Deleted and overwritten entries are zeroed in the database file (secure_delete),
// and the write-ahead log is checkpointed and truncated after every transaction
// that removed data, so their ciphertext does not linger on disk either.
//
// Bucket names are non-empty and hold no NUL byte (so the key_tag input is
// unambiguous); keys and values are any bytes, empty included.
//
// There is no export or backup: the master key never leaves the vault. [Wipe]
// destroys the key file first, which makes the database unreadable, then removes
// the rest.
//
// What the vault does not do: it cannot tell a database rolled back to an older
// copy of itself (taken with the same key) from the current one, and after
// ChangePassphrase the old key file is replaced by a rename, so on storage that
// keeps freed blocks the master key sealed under the old passphrase may survive
// until they are reused. On flash storage, overwriting in place (as Wipe does to
// the key file) is not a guarantee either; Wipe is as thorough as the file system
// lets it be.
package vault

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"modernc.org/sqlite" // also registers the "sqlite" driver
)

// File names inside a vault directory.
const (
	keyName    = "vault.key"
	keyTmpName = "vault.key.tmp" // a key file being written, renamed over keyName
	dbName     = "vault.db"
)

// dbNames are the database file and the files SQLite keeps beside it.
var dbNames = []string{dbName, dbName + "-wal", dbName + "-shm", dbName + "-journal"}

// HKDF info strings, one per subkey of the master key.
const (
	infoTag   = "mahfooz vault v1 tag"
	infoSeal  = "mahfooz vault v1 seal"
	infoCheck = "mahfooz vault v1 check"
)

// schemaVersion is stored in the database; Open refuses a database of another one.
const schemaVersion = 1

const schema = `
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
CREATE TABLE entries (
	key_tag    BLOB PRIMARY KEY,
	bucket_tag BLOB NOT NULL,
	sealed     BLOB NOT NULL
);
CREATE INDEX entries_by_bucket ON entries (bucket_tag);
`

var (
	// ErrWrongPassphrase is returned by Open and ChangePassphrase when the passphrase
	// does not open the key file (or the key file's sealed part was altered).
	ErrWrongPassphrase = errors.New("vault: wrong passphrase")
	// ErrNotFound is returned by Tx.Get when the bucket holds no such key.
	ErrNotFound = errors.New("vault: not found")
	// ErrExists is returned by Create when dir already holds a vault.
	ErrExists = errors.New("vault: a vault already exists there")
	// ErrNoVault is returned by Open when dir holds no vault.
	ErrNoVault = errors.New("vault: no vault there")
	// ErrClosed is returned by a Vault's methods after Close (or after Wipe on its
	// directory).
	ErrClosed = errors.New("vault: vault is closed")
	// ErrDamaged is matched (errors.Is) by the errors returned when vault.key does
	// not parse (including a format version this build does not read), when the
	// database does not belong to the key, or when a stored entry fails
	// authentication.
	ErrDamaged = errors.New("vault: vault is damaged")
)

// damagedError is an error that matches ErrDamaged and says what is damaged.
type damagedError struct{ what string }

func (e *damagedError) Error() string        { return "vault: " + e.what }
func (e *damagedError) Is(target error) bool { return target == ErrDamaged }

func damaged(what string) error { return &damagedError{what} }

// SQLite primary result codes that mean the database file is damaged.
const (
	sqliteCorrupt = 11 // SQLITE_CORRUPT
	sqliteNotADB  = 26 // SQLITE_NOTADB
)

// dbErr wraps an error from the database; one that reports a damaged file
// matches ErrDamaged.
func dbErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteCorrupt, sqliteNotADB:
			return damaged("vault.db is damaged: " + se.Error())
		}
	}
	return fmt.Errorf("vault: database: %w", err)
}

// Vault is an open vault. It is safe for concurrent use by multiple goroutines:
// transactions from Update run one at a time, and View transactions run beside
// them on a consistent snapshot.
type Vault struct {
	dir string // absolute

	mu     sync.RWMutex // held shared by transactions, exclusively by Close
	closed bool
	db     *sql.DB

	writeMu sync.Mutex // one Update at a time
	keyMu   sync.Mutex // one ChangePassphrase at a time

	rand io.Reader // a lockedReader

	master []byte
	tagKey []byte
	seal   cipher.AEAD // XChaCha20-Poly1305 under k_enc; safe for concurrent use
}

// openVaults lists the vaults open in this process by directory, so that Wipe can
// close them.
var openVaults struct {
	sync.Mutex
	m map[string]map[*Vault]struct{}
}

// createMu keeps two Creates in this process from racing on one directory.
var createMu sync.Mutex

func register(v *Vault) {
	openVaults.Lock()
	defer openVaults.Unlock()
	if openVaults.m == nil {
		openVaults.m = make(map[string]map[*Vault]struct{})
	}
	if openVaults.m[v.dir] == nil {
		openVaults.m[v.dir] = make(map[*Vault]struct{})
	}
	openVaults.m[v.dir][v] = struct{}{}
}

func unregister(v *Vault) {
	openVaults.Lock()
	defer openVaults.Unlock()
	delete(openVaults.m[v.dir], v)
	if len(openVaults.m[v.dir]) == 0 {
		delete(openVaults.m, v.dir)
	}
}

// openOn returns the vaults open on dir (absolute) in this process.
func openOn(dir string) []*Vault {
	openVaults.Lock()
	defer openVaults.Unlock()
	var vs []*Vault
	for v := range openVaults.m[dir] {
		vs = append(vs, v)
	}
	return vs
}

// Exists reports whether dir holds a vault (a key file).
func Exists(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, keyName))
	return err == nil && fi.Mode().IsRegular()
}

// Create makes a new vault in dir (created if needed, its mode set to 0700) under
// passphrase, with the key derivation parameters p (use DefaultKDF), and opens
// it. rand supplies the master key, salts and nonces; nil means crypto/rand. It
// returns ErrExists if dir already holds a vault, and refuses an empty
// passphrase. Leftovers of an interrupted Create or Wipe (database files without
// a key file, which nothing can read) are removed.
func Create(dir string, passphrase []byte, p KDFParams, rand io.Reader) (*Vault, error) {
	if rand == nil {
		rand = cryptoRand
	}
	if !p.valid() {
		return nil, errors.New("vault: Argon2id parameters out of range")
	}
	if len(passphrase) == 0 {
		return nil, errors.New("vault: empty passphrase")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	createMu.Lock()
	defer createMu.Unlock()
	if Exists(abs) {
		return nil, ErrExists
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	for _, name := range append([]string{keyTmpName}, dbNames...) {
		if err := os.Remove(filepath.Join(abs, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("vault: removing leftovers: %w", err)
		}
	}

	master := make([]byte, masterKeySize)
	if _, err := io.ReadFull(rand, master); err != nil {
		return nil, fmt.Errorf("vault: reading randomness: %w", err)
	}
	keyData, err := sealKeyFile(master, passphrase, p, rand)
	if err != nil {
		clear(master)
		return nil, err
	}
	v, err := newVault(abs, master, rand)
	if err != nil {
		clear(master)
		return nil, err
	}
	fail := func(err error) (*Vault, error) {
		v.closeDB()
		for _, name := range dbNames {
			os.Remove(filepath.Join(abs, name))
		}
		return nil, err
	}

	// SQLite creates the WAL and shared-memory files with the database file's
	// permissions, so creating that file 0600 first covers all three.
	f, err := os.OpenFile(filepath.Join(abs, dbName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(fmt.Errorf("vault: creating database: %w", err))
	}
	f.Close()
	if err := v.openDB(); err != nil {
		return fail(err)
	}
	check, err := v.checkValue()
	if err != nil {
		return fail(err)
	}
	if _, err := v.db.Exec(schema); err != nil {
		return fail(fmt.Errorf("vault: creating database: %w", err))
	}
	if _, err := v.db.Exec(`INSERT INTO meta (name, value) VALUES ('schema', ?), ('check', ?)`, schemaVersion, check); err != nil {
		return fail(fmt.Errorf("vault: creating database: %w", err))
	}
	// The key file comes last: a vault exists once vault.key does.
	if err := writeKeyFile(abs, keyData); err != nil {
		return fail(err)
	}
	register(v)
	return v, nil
}

// Open opens the vault in dir with passphrase. It returns ErrNoVault if dir holds
// no vault, ErrWrongPassphrase if the passphrase is wrong, and an error matching
// ErrDamaged if the key file or the database is damaged. An opened vault draws
// its nonces from crypto/rand.
func Open(dir string, passphrase []byte) (*Vault, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	data, err := readKeyFile(abs)
	if err != nil {
		return nil, err
	}
	master, err := openKeyFile(data, passphrase)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(abs, dbName)); err != nil || !fi.Mode().IsRegular() {
		clear(master)
		return nil, damaged("vault.db is missing")
	}
	v, err := newVault(abs, master, cryptoRand)
	if err != nil {
		clear(master)
		return nil, err
	}
	if err := v.openDB(); err != nil {
		v.closeDB()
		return nil, err
	}
	if err := v.checkDB(); err != nil {
		v.closeDB()
		return nil, err
	}
	register(v)
	return v, nil
}

// cryptoRand is crypto/rand's reader (named so that parameters called rand do not
// hide it).
var cryptoRand = rand.Reader

// readKeyFile reads dir's key file, refusing anything longer than a key file.
func readKeyFile(dir string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, keyName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoVault
	}
	if err != nil {
		return nil, fmt.Errorf("vault: reading key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(keyFileSize)+1))
	if err != nil {
		return nil, fmt.Errorf("vault: reading key file: %w", err)
	}
	return data, nil
}

// writeKeyFile replaces dir's key file with data atomically and durably.
func writeKeyFile(dir string, data []byte) error {
	tmp := filepath.Join(dir, keyTmpName)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vault: writing key file: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vault: writing key file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, keyName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("vault: writing key file: %w", err)
	}
	return nil
}

// syncDir makes a directory's entries (a created, renamed or removed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// newVault derives the subkeys of master. The Vault takes ownership of master.
func newVault(dir string, master []byte, rand io.Reader) (*Vault, error) {
	tagKey, err := hkdf.Key(sha256.New, master, nil, infoTag, 32)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	encKey, err := hkdf.Key(sha256.New, master, nil, infoSeal, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	defer clear(encKey)
	seal, err := chacha20poly1305.NewX(encKey)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return &Vault{dir: dir, rand: &lockedReader{r: rand}, master: master, tagKey: tagKey, seal: seal}, nil
}

// checkValue is stored in the database so that Open can tell that the database
// belongs to the key file.
func (v *Vault) checkValue() ([]byte, error) {
	c, err := hkdf.Key(sha256.New, v.master, nil, infoCheck, 32)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return c, nil
}

// openDB opens the database connection pool. Writers take the write lock at
// BEGIN (immediate) and wait for each other (busy timeout); readers run deferred
// transactions on a snapshot.
func (v *Vault) openDB() error {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(v.dir, dbName))}
	dsn := u.String() + "?mode=rw" +
		"&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=secure_delete(ON)&_pragma=temp_store(MEMORY)&_pragma=cell_size_check(ON)" +
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("vault: opening database: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(2)
	if err := db.Ping(); err != nil {
		db.Close()
		return dbErr(err)
	}
	v.db = db
	return nil
}

// checkDB checks the schema version and that the database belongs to the key.
func (v *Vault) checkDB() error {
	var version int
	var check []byte
	if err := v.db.QueryRow(`SELECT value FROM meta WHERE name = 'schema'`).Scan(&version); err != nil {
		return damaged("vault.db is not a vault database")
	}
	if version != schemaVersion {
		return damaged(fmt.Sprintf("vault.db has schema version %d; this build reads %d", version, schemaVersion))
	}
	if err := v.db.QueryRow(`SELECT value FROM meta WHERE name = 'check'`).Scan(&check); err != nil {
		return damaged("vault.db is not a vault database")
	}
	want, err := v.checkValue()
	if err != nil {
		return err
	}
	if !sameKey(check, want) {
		return damaged("vault.db does not belong to vault.key")
	}
	return nil
}

// closeDB closes the database and forgets the keys.
func (v *Vault) closeDB() error {
	var err error
	if v.db != nil {
		v.checkpoint()
		err = v.db.Close()
		v.db = nil
	}
	clear(v.master)
	clear(v.tagKey)
	v.seal = nil
	return err
}

// checkpoint copies the write-ahead log into the database and truncates it, so
// that what a transaction deleted or overwrote leaves the log too. It is best
// effort: a reader holding an old snapshot past the busy timeout keeps the log,
// and the next checkpoint (at the latest, Close) clears it.
func (v *Vault) checkpoint() {
	var busy, logFrames, done int
	v.db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
}

// lockedReader makes a caller's random source safe for the Vault's concurrent
// transactions.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(b)
}

// randRead fills b from the vault's randomness.
func (v *Vault) randRead(b []byte) error {
	if _, err := io.ReadFull(v.rand, b); err != nil {
		return fmt.Errorf("vault: reading randomness: %w", err)
	}
	return nil
}

// Update runs fn in one read-write transaction. If fn returns nil the
// transaction is committed, and is durable on disk (fsync) when Update returns
// nil; if fn returns an error (or panics) nothing it wrote is kept and Update
// returns that error. Updates run one at a time. After a transaction that
// deleted or overwrote an entry, Update also checkpoints the write-ahead log,
// which waits for View transactions in progress. fn must not call the Vault's
// methods, nor use tx after it returns.
func (v *Vault) Update(fn func(tx *Tx) error) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	stx, err := v.db.BeginTx(context.Background(), nil)
	if err != nil {
		return dbErr(err)
	}
	defer stx.Rollback()
	tx := &Tx{v: v, tx: stx, write: true}
	err = fn(tx)
	tx.done = true
	if err != nil {
		return err
	}
	if err := stx.Commit(); err != nil {
		return dbErr(err)
	}
	if tx.removed {
		v.checkpoint()
	}
	return nil
}

// View runs fn in a read-only transaction, which sees one consistent state of
// the vault. Views run concurrently with each other and with an Update. It
// returns fn's error. fn must not call the Vault's methods, nor use tx after it
// returns.
func (v *Vault) View(fn func(tx *Tx) error) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	stx, err := v.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return dbErr(err)
	}
	defer stx.Rollback()
	tx := &Tx{v: v, tx: stx}
	err = fn(tx)
	tx.done = true
	return err
}

// ChangePassphrase seals the master key under a new passphrase with the
// parameters p, replacing the key file atomically. It returns
// ErrWrongPassphrase if oldPassphrase is not the current passphrase. The data is
// not re-encrypted: the master key stays the same.
func (v *Vault) ChangePassphrase(oldPassphrase, newPassphrase []byte, p KDFParams) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	data, err := readKeyFile(v.dir)
	if err != nil {
		return err
	}
	master, err := openKeyFile(data, oldPassphrase)
	if err != nil {
		return err
	}
	defer clear(master)
	if !sameKey(master, v.master) {
		return damaged("vault.key no longer holds this vault's key")
	}
	newData, err := sealKeyFile(master, newPassphrase, p, v.rand)
	if err != nil {
		return err
	}
	return writeKeyFile(v.dir, newData)
}

// Close checkpoints the database, closes it and forgets the keys. It waits for
// transactions in progress. Closing a closed Vault does nothing.
func (v *Vault) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	unregister(v)
	if err := v.closeDB(); err != nil {
		return fmt.Errorf("vault: closing database: %w", err)
	}
	return nil
}
