package device

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"mahfooz/device/client"
	"mahfooz/wire"
)

// Reconnection and maintenance timing.
const (
	backoffMin = 500 * time.Millisecond
	backoffMax = 30 * time.Second
	// tickInterval is how often Run sweeps expired messages and checks the
	// certificate and the KeyPackage stock.
	tickInterval = time.Second
	// maintenanceInterval is how often Run renews, tops up and prunes while connected.
	maintenanceInterval = 10 * time.Minute
	// dialTimeout bounds one connection attempt.
	dialTimeout = 20 * time.Second
	// stepTimeout bounds one step of Run's work on a connection (processing what
	// arrived, maintenance), so that an exchange that stops answering cannot hold
	// the device's lock for ever.
	stepTimeout = 2 * time.Minute
)

// item is one push from the exchange waiting to be processed.
type item struct {
	deliver *wire.Deliver
	expired *wire.Expired
	dirty   bool // DirectoryUpdated
}

// session is one connection to the exchange with the pushes it received. Pushes
// are queued by the client's read goroutine and processed under Device.mu by
// whoever holds it: Run's loop, Sync, or an operation waiting for a commit race to
// resolve.
type session struct {
	c    *client.Client
	refs int // guarded by Device.connMu

	mu    sync.Mutex
	queue []item // guarded by mu
	wake  chan struct{}

	// Guarded by Device.mu.
	synced    bool     // the mailbox as of the connection's start was processed
	flushed   bool     // the outbox was flushed on this connection
	dirDirty  bool     // the directory must be fetched again
	reconcile bool     // the directory changed: groups must be brought in line
	replace   int      // one-time KeyPackages used since the last upload
	retry     [][]byte // groups that changed epoch: held deliveries for them are tried again
}

func (s *session) enqueue(it item) {
	s.mu.Lock()
	s.queue = append(s.queue, it)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) take() []item {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

func (s *session) alive() bool {
	select {
	case <-s.c.Done():
		return false
	default:
		return true
	}
}

// dial opens a new connection whose pushes go to a new session.
func (dv *Device) dial(ctx context.Context) (*session, error) {
	s := &session{wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		Addr:        dv.addr,
		Root:        dv.root,
		Certificate: dv.tlsCertificate(),
		Software:    Software,
		Logger:      dv.log,
		Now:         dv.cfg.Now,
		Dial:        dv.cfg.Dial,
		Handlers: client.Handlers{
			Deliver:          func(m *wire.Deliver) { s.enqueue(item{deliver: m}) },
			Expired:          func(m *wire.Expired) { s.enqueue(item{expired: m}) },
			DirectoryUpdated: func() { s.enqueue(item{dirty: true}) },
			Revoked: func(m *wire.Revoked) {
				if err := dv.checkRevocation(m.Proof); err != nil {
					// Only the authority can order a wipe; an exchange that says
					// so without its signature is ignored (and cuts us off anyway).
					dv.log.Warn("device: exchange says this device is revoked, without the authority's proof", "err", err)
					return
				}
				go dv.wipe("revoked by the authority")
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOffline, err)
	}
	s.c = c
	return s, nil
}

// acquire returns the current connection, dialling one if there is none, and
// holds it open until release. While Run is active it waits for Run's
// connection instead of opening a second one.
func (dv *Device) acquire(ctx context.Context) (*session, error) {
	for {
		if err := dv.usable(); err != nil {
			return nil, err
		}
		dv.connMu.Lock()
		if s := dv.sess; s != nil && s.alive() {
			s.refs++
			dv.connMu.Unlock()
			return s, nil
		}
		if dv.running {
			dv.connMu.Unlock()
			select {
			case dv.kick <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrOffline, ctx.Err())
			case <-dv.closing:
				return nil, dv.usable()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		dv.connMu.Unlock()
		s, err := dv.dial(ctx)
		if err != nil {
			return nil, err
		}
		if cur := dv.adopt(s); cur != s {
			return cur, nil
		}
		select {
		case <-dv.closing:
			dv.release(s)
			return nil, dv.usable()
		default:
		}
		return s, nil
	}
}

// release gives up a hold on a connection; the last one closes it.
func (dv *Device) release(s *session) {
	dv.connMu.Lock()
	s.refs--
	last := s.refs <= 0
	if last && dv.sess == s {
		dv.sess = nil
	}
	dv.connMu.Unlock()
	if last {
		s.c.Close()
	}
}

// dropSession closes the current connection (on Close and wipe).
func (dv *Device) dropSession() {
	dv.connMu.Lock()
	s := dv.sess
	dv.sess = nil
	dv.connMu.Unlock()
	if s != nil {
		s.c.Close()
	}
}

// Sync connects if needed, sends what waits in the outbox, receives and processes
// everything the exchange holds for the device, and sweeps expired messages. It
// is meant for one-shot use (a CLI command); a long-running app calls Run.
func (dv *Device) Sync(ctx context.Context) error {
	s, err := dv.acquire(ctx)
	if err != nil {
		return err
	}
	defer dv.release(s)
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if err := dv.usable(); err != nil {
		return err
	}
	return dv.maintainLocked(ctx, s)
}

// syncLocked waits until everything the exchange held when the connection opened
// has been queued, then processes the queue. dv.mu is held.
func (dv *Device) syncLocked(ctx context.Context, s *session) error {
	if err := s.c.Sync(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrOffline, err)
	}
	if err := dv.drainLocked(ctx, s); err != nil {
		return err
	}
	s.synced = true
	return nil
}

// readyLocked makes sure an operation starts from the latest group states: the
// outbox was sent and what the exchange held was processed. dv.mu is held.
func (dv *Device) readyLocked(ctx context.Context, s *session) error {
	if err := dv.usable(); err != nil {
		return err
	}
	if s.synced {
		return nil
	}
	return dv.syncLocked(ctx, s)
}

// Run keeps the device connected until ctx ends (returning ctx's error), the
// device is closed (ErrClosed) or it was revoked and wiped itself (ErrWiped). It
// reconnects with exponential backoff, processes and acknowledges what the
// exchange delivers, sends the outbox, keeps the directory current and removes
// revoked devices from every group, renews the certificate when less than half
// its lifetime is left, keeps KeyPackages in stock and deletes disappearing
// messages when their time comes. Only one Run may be active at a time.
func (dv *Device) Run(ctx context.Context) error {
	dv.connMu.Lock()
	if dv.running {
		dv.connMu.Unlock()
		return errors.New("device: Run is already active")
	}
	dv.running = true
	dv.connMu.Unlock()
	defer func() {
		dv.connMu.Lock()
		dv.running = false
		dv.connMu.Unlock()
	}()
	err := dv.run(ctx)
	if errors.Is(err, ErrWiped) {
		<-dv.wiped // the vault is gone when Run returns
	}
	return err
}

func (dv *Device) run(ctx context.Context) error {

	backoff := backoffMin
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	for {
		if err := dv.runErr(ctx); err != nil {
			return err
		}
		s, err := dv.runConnect(ctx)
		if err != nil {
			if err := dv.runErr(ctx); err != nil {
				return err
			}
			dv.log.Info("device: exchange unreachable; retrying", "in", backoff, "err", err)
			wait := jitter(backoff)
			backoff = min(2*backoff, backoffMax)
			if err := dv.waitRun(ctx, wait, tick); err != nil {
				return err
			}
			continue
		}
		backoff = backoffMin
		dv.publish(Event{Kind: EventConnection, Connected: true})
		err = dv.serve(ctx, s, tick)
		dv.release(s)
		dv.publish(Event{Kind: EventConnection, Connected: false})
		if err != nil {
			return err
		}
	}
}

// runErr is why Run must stop, if it must.
func (dv *Device) runErr(ctx context.Context) error {
	if err := dv.usable(); err != nil {
		return err
	}
	return ctx.Err()
}

// runConnect dials Run's connection and makes it the device's current one.
func (dv *Device) runConnect(ctx context.Context) (*session, error) {
	dv.connMu.Lock()
	if s := dv.sess; s != nil && s.alive() {
		s.refs++
		dv.connMu.Unlock()
		return s, nil
	}
	dv.connMu.Unlock()
	s, err := dv.dial(ctx)
	if err != nil {
		return nil, err
	}
	return dv.adopt(s), nil
}

// adopt makes a newly dialled session the device's current one, holding one
// reference, unless another caller connected meanwhile: then s is closed and
// theirs is shared instead. It returns the session to use.
func (dv *Device) adopt(s *session) *session {
	dv.connMu.Lock()
	if cur := dv.sess; cur != nil && cur.alive() {
		cur.refs++
		dv.connMu.Unlock()
		s.c.Close() // not under connMu: closing waits for the client's goroutines
		return cur
	}
	s.refs = 1
	dv.sess = s
	dv.connMu.Unlock()
	return s
}

// waitRun waits d while sweeping on every tick, or less if kicked.
func (dv *Device) waitRun(ctx context.Context, d time.Duration, tick *time.Ticker) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return nil
		case <-dv.kick:
			return nil
		case <-tick.C:
			dv.sweepLogged()
		case <-ctx.Done():
			return ctx.Err()
		case <-dv.closing:
			return dv.usable()
		}
	}
}

// serve runs one connection until it ends. It returns nil to reconnect.
func (dv *Device) serve(ctx context.Context, s *session, tick *time.Ticker) error {
	if err := dv.step(ctx, func(ctx context.Context) error { return dv.maintainLocked(ctx, s) }); err != nil {
		if errors.Is(err, ErrWiped) || errors.Is(err, ErrClosed) {
			return err
		}
		dv.log.Warn("device: after connecting", "err", err)
		if !s.alive() {
			return nil
		}
	}
	lastMaintenance := time.Now()
	for {
		select {
		case <-s.wake:
			err := dv.step(ctx, func(ctx context.Context) error {
				if err := dv.drainLocked(ctx, s); err != nil {
					return err
				}
				return dv.afterDrainLocked(ctx, s)
			})
			if err != nil {
				if errors.Is(err, ErrWiped) || errors.Is(err, ErrClosed) {
					return err
				}
				dv.log.Warn("device: processing", "err", err)
			}
		case <-s.c.Done():
			dv.log.Info("device: disconnected from the exchange", "err", s.c.Err())
			return nil
		case <-tick.C:
			dv.sweepLogged()
			if time.Since(lastMaintenance) >= maintenanceInterval {
				lastMaintenance = time.Now()
				if err := dv.step(ctx, func(ctx context.Context) error { return dv.maintainLocked(ctx, s) }); err != nil {
					dv.log.Warn("device: maintenance", "err", err)
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-dv.closing:
			return dv.usable()
		}
	}
}

// step runs one step of Run's work under dv.mu, bounded by stepTimeout.
func (dv *Device) step(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return dv.locked(func() error { return f(ctx) })
}

// locked runs f under dv.mu, unless the device was closed or wiped meanwhile.
func (dv *Device) locked(f func() error) error {
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if err := dv.usable(); err != nil {
		return err
	}
	return f()
}

// maintainLocked brings a connection up to date: the outbox goes out, everything
// the exchange holds is processed, the directory is refreshed (removing revoked
// devices from groups), the certificate is renewed if due, KeyPackages are
// topped up and old records pruned.
func (dv *Device) maintainLocked(ctx context.Context, s *session) error {
	if err := dv.flushLocked(ctx, s); err != nil {
		return err
	}
	// The directory first, so that commits in the backlog that remove revoked
	// devices are shown as such.
	if _, err := dv.refreshDirectory(ctx, s); err != nil {
		s.dirDirty = true
	}
	s.reconcile = true
	if err := dv.syncLocked(ctx, s); err != nil {
		return err
	}
	var errs []error
	if err := dv.afterDrainLocked(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if err := dv.renewIfDueLocked(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if err := dv.topUpKeyPackagesLocked(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if err := dv.pruneLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := dv.sweepLocked(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// afterDrainLocked does what processing asked for: a directory refresh with the
// roster changes it calls for, and KeyPackage replacement.
func (dv *Device) afterDrainLocked(ctx context.Context, s *session) error {
	var errs []error
	for range 3 {
		if s.dirDirty {
			s.dirDirty = false
			if _, err := dv.refreshDirectory(ctx, s); err != nil {
				errs = append(errs, err)
				break
			}
			s.reconcile = true
		}
		if !s.reconcile {
			break
		}
		s.reconcile = false
		if err := dv.reconcileLocked(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if s.replace > 0 {
		if err := dv.topUpKeyPackagesLocked(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}
