// Package sqlite is the exchange's embedded store: one SQLite database file
// (modernc.org/sqlite, no cgo) implementing store.Store.
//
// What is stored: routing metadata and MLS ciphertext only — for each message in
// flight its sender and recipient device IDs, message ID, group ID, times and the
// MLSMessage payload (once, however many recipients); per group with a sequenced
// commit its ID and next epoch; per accepted Send a deduplication record (sender,
// message ID, SHA-256 of the Send, sequence) kept until the message's TTL and
// holding no payload; expiry notices (sender, message ID, recipient); KeyPackages
// (public by design); attachment ciphertext with its owner and recipients. What is
// not: any key, plaintext, ticket, token or certificate private key — the exchange
// never has them. Nothing is kept after it is acknowledged or expires, and there
// are no backups.
//
// Durability: WAL with synchronous=FULL, so a commit is on stable storage (fsync)
// before any write is reported done; secure_delete=ON zeroes deleted content in
// the database file, and Sweep and Checkpoint truncate the WAL so that deleted
// ciphertext does not linger there either. Foreign keys are enforced.
//
// Concurrency: one writer goroutine owns one connection and commits whatever
// writes are queued together in one transaction (group commit), so concurrent
// Sends share one fsync; a second goroutine reports outcomes in commit order.
// Reads (Pending, ReadChunk, counts) use a separate pool of connections and never
// wait for the writer. A Store is safe for concurrent use. The writer keeps in
// memory, rebuilt from the file at Open, the last sequence number, each stored
// message's number of undelivered recipients (one small map entry per message in
// flight) and the mailbox usage of recent recipients.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"mahfooz/exchange/store"
)

// FileName is the database's conventional name inside the exchange's home directory.
const FileName = "exchange.db"

// schemaVersion is stored in meta; Open refuses a database of another version.
const schemaVersion = 1

// Implementation limits.
const (
	// maxBatch bounds the writes committed in one transaction.
	maxBatch = 512
	// sweepBatch bounds the expired messages handled in one transaction, so that
	// a large sweep does not hold up Sends.
	sweepBatch = 1000
	// defaultReaders is the size of the read pool.
	defaultReaders = 4
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives storage events (never payloads); nil discards them.
	Logger *slog.Logger
	// Readers is the number of connections for reads; zero means 4.
	Readers int
}

// Store is the SQLite implementation of store.Store. Its methods are safe for
// concurrent use.
type Store struct {
	db     *sql.DB
	lock   *os.File // held (flock) while open
	log    *slog.Logger
	w      *writer
	r      *readers
	quotas atomic.Pointer[store.Quotas]

	mu     sync.RWMutex // held shared while submitting, exclusively by Close
	closed bool         // guarded by mu
	reqs   chan op      // closed by Close under mu
	notify chan batch
	done   chan struct{} // closed when the notifier has reported everything
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it (mode 0600) and its schema if it
// does not exist. Only one Store at a time may have a database open, in any
// process; a second Open fails until the first is closed.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Readers <= 0 {
		opts.Readers = defaultReaders
	}
	// One process at a time: the writer caches what it writes (the last
	// sequence, mailbox sizes), which a second writer would make wrong.
	lock, err := os.OpenFile(path+"-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sqlite: %s is in use by another exchange: %w", path, err)
	}
	s, err := open(path, opts)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func open(path string, opts Options) (*Store, error) {
	// Create the file ourselves so that it, and the -wal and -shm files SQLite
	// gives the same mode, are readable by the owner only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()
	dsn := "file:" + path + "?mode=rw" +
		"&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)&_pragma=secure_delete(ON)" +
		// Statement journals (multi-row statements, triggers) in memory, not in
		// temporary files: they hold pages of this transaction only.
		"&_pragma=temp_store(MEMORY)&_pragma=cache_size(-16384)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(opts.Readers + 1)
	db.SetMaxIdleConns(opts.Readers + 1)
	db.SetConnMaxIdleTime(0)
	ctx := context.Background()
	if err := initSchema(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w, err := newWriter(ctx, conn)
	if err != nil {
		conn.Close()
		db.Close()
		return nil, err
	}
	r, err := newReaders(ctx, db)
	if err != nil {
		w.close()
		db.Close()
		return nil, err
	}
	s := &Store{
		db:     db,
		log:    opts.Logger,
		w:      w,
		r:      r,
		reqs:   make(chan op, maxBatch),
		notify: make(chan batch, 64),
		done:   make(chan struct{}),
	}
	q := store.DefaultQuotas
	s.quotas.Store(&q)
	w.quotas = &s.quotas
	go s.writeLoop()
	go s.notifyLoop()
	return s, nil
}

func initSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("sqlite: creating schema: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?), (?, 0)`,
		metaSchema, schemaVersion, metaLastSeq); err != nil {
		return fmt.Errorf("sqlite: creating schema: %w", err)
	}
	var v int
	if err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaSchema).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: reading schema version: %w", err)
	}
	if v != schemaVersion {
		return fmt.Errorf("sqlite: database schema version %d, this build reads %d", v, schemaVersion)
	}
	return nil
}

// op is one write. apply runs inside the batch's transaction and records the
// op's own outcome (a conflict, a quota) in the op; a returned error is a database
// failure, after which the batch is rolled back and each op retried alone, so one
// failing write does not fail others. finish reports the outcome, on the notifier
// goroutine in commit order; failed is the transaction's error, if any.
type op interface {
	apply(w *writer) error
	finish(failed error)
}

type batch struct {
	ops []op
	err error
}

// submit hands o to the writer, or finishes it with ErrClosed.
func (s *Store) submit(o op) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		o.finish(store.ErrClosed)
		return
	}
	s.reqs <- o
	s.mu.RUnlock()
}

// writeLoop is the one goroutine that writes: it takes whatever ops are queued,
// commits them in one transaction, and passes them on to be reported.
func (s *Store) writeLoop() {
	defer close(s.notify)
	defer s.w.close()
	for first := range s.reqs {
		ops := []op{first}
	fill:
		for len(ops) < maxBatch {
			select {
			case o, ok := <-s.reqs:
				if !ok {
					break fill
				}
				ops = append(ops, o)
			default:
				break fill
			}
		}
		err := s.w.run(ops)
		if err == nil || len(ops) == 1 {
			if err != nil {
				s.log.Error("sqlite: write failed", "err", err)
			}
			s.notify <- batch{ops, err}
			continue
		}
		s.log.Warn("sqlite: batch failed; retrying its writes one by one", "writes", len(ops), "err", err)
		for _, o := range ops {
			err := s.w.run([]op{o})
			if err != nil {
				s.log.Error("sqlite: write failed", "err", err)
			}
			s.notify <- batch{[]op{o}, err}
		}
	}
}

func (s *Store) notifyLoop() {
	defer close(s.done)
	for b := range s.notify {
		for _, o := range b.ops {
			o.finish(b.err)
		}
	}
}

// Close waits for queued writes, then closes the database. Later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	s.r.close()
	err := s.db.Close()
	s.lock.Close() // releases the flock
	return err
}

// SetQuotas implements store.Store.
func (s *Store) SetQuotas(q store.Quotas) {
	q = q.WithDefaults()
	s.quotas.Store(&q)
}

// syncOp wraps a write whose caller waits for it.
type syncOp struct {
	f    func(w *writer) error // database error → returned; logical error → set err
	err  error
	done chan struct{}
}

func (o *syncOp) apply(w *writer) error {
	o.err = nil
	return o.f(w)
}

func (o *syncOp) finish(failed error) {
	if failed != nil {
		o.err = dbErr(failed)
	}
	close(o.done)
}

// do runs f as one write and waits for it to be durable. f returns a database
// error, or sets its outcome through the pointer it is given.
func (s *Store) do(ctx context.Context, f func(w *writer, outcome *error) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &syncOp{done: make(chan struct{})}
	o.f = func(w *writer) error { return f(w, &o.err) }
	s.submit(o)
	<-o.done // once submitted, a write cannot be withdrawn
	return o.err
}

func dbErr(err error) error {
	if err == nil || errors.Is(err, store.ErrClosed) {
		return err
	}
	return fmt.Errorf("sqlite: %w", err)
}

// ms converts a time to the stored Unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }
