package authority

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// dbFile is the authority database's file name inside the state directory.
const dbFile = "authority.db"

// schemaVersion is stored in meta; Open refuses a database of another version.
const schemaVersion = 1

// schema creates the authority database. Times are Unix milliseconds (0 = never).
// Tickets are stored only as a hash of their secret. The certificates table is the
// append-only log of every certificate the root issued; triggers refuse any change
// to a row once written.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
	id         BLOB PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	state      TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
	enrolled   INTEGER NOT NULL,
	issued     INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER NOT NULL DEFAULT 0,
	cert       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
	hash    BLOB PRIMARY KEY,
	name    TEXT NOT NULL,
	role    TEXT NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL,
	used    INTEGER NOT NULL DEFAULT 0,
	used_at INTEGER NOT NULL DEFAULT 0,
	device  BLOB
);
CREATE TABLE IF NOT EXISTS certificates (
	idx       INTEGER PRIMARY KEY,
	leaf_hash BLOB NOT NULL,
	cert      BLOB NOT NULL,
	device    BLOB,
	kind      TEXT NOT NULL,
	issued    INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS certificates_no_update BEFORE UPDATE ON certificates
BEGIN SELECT RAISE(ABORT, 'certificates are append-only'); END;
CREATE TRIGGER IF NOT EXISTS certificates_no_delete BEFORE DELETE ON certificates
BEGIN SELECT RAISE(ABORT, 'certificates are append-only'); END;
CREATE TABLE IF NOT EXISTS tree_heads (
	size      INTEGER PRIMARY KEY,
	root_hash BLOB NOT NULL,
	timestamp INTEGER NOT NULL,
	signature BLOB NOT NULL
);
`

// Meta keys.
const (
	metaSchema       = "schema_version"
	metaDirectorySeq = "directory_seq"
)

// openDB opens (creating if create is set) the database at path. WAL lets readers
// in other processes proceed while one writes; the busy timeout makes writers
// queue rather than fail; _txlock=immediate takes the write lock at BEGIN, so a
// read-then-write transaction (such as redeeming a ticket) cannot interleave with
// another process's.
func openDB(path string, create bool) (*sql.DB, error) {
	mode := "rw"
	if create {
		mode = "rwc"
	}
	dsn := "file:" + path + "?mode=" + mode +
		"&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)&_pragma=secure_delete(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("authority: opening database: %w", err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("authority: opening database: %w", err)
	}
	if create {
		if _, err := db.Exec(schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("authority: creating database: %w", err)
		}
		if _, err := db.Exec(`INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?), (?, 0)`,
			metaSchema, schemaVersion, metaDirectorySeq); err != nil {
			db.Close()
			return nil, fmt.Errorf("authority: creating database: %w", err)
		}
	}
	var v int
	if err := db.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaSchema).Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("authority: reading database: %w", err)
	}
	if v != schemaVersion {
		db.Close()
		return nil, fmt.Errorf("authority: database schema version %d, this build reads %d", v, schemaVersion)
	}
	return db, nil
}

// withTx runs f in one write transaction, committing if it returns nil.
func withTx(db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("authority: database: %w", err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authority: database: %w", err)
	}
	return nil
}

func bumpDirectorySeq(tx *sql.Tx) error {
	_, err := tx.Exec(`UPDATE meta SET value = value + 1 WHERE key = ?`, metaDirectorySeq)
	return dbErr(err)
}

func dbErr(err error) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return fmt.Errorf("authority: database: %w", err)
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
