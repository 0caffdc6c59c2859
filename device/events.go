package device

import "sync"

// subscriber is one Subscribe channel with its own unbounded queue, so that a slow
// reader never holds up the device and never misses an event.
type subscriber struct {
	ch     chan Event
	mu     sync.Mutex
	q      []Event // guarded by mu
	ending bool    // guarded by mu
	wake   chan struct{}
	stop   chan struct{}
	once   sync.Once
}

// Subscribe returns a channel of events: new messages (text, files, roster
// changes, timer changes, undelivered notices), status changes of outgoing
// messages, expiries, conversation changes, and the wipe after revocation. No
// event is dropped: each subscriber has its own queue. The returned function
// ends the subscription and closes the channel; the channel is also closed,
// after the events already queued, when the device is closed or wiped. It is
// safe for concurrent use.
func (dv *Device) Subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event), wake: make(chan struct{}, 1), stop: make(chan struct{})}
	dv.subsMu.Lock()
	if dv.usable() != nil {
		dv.subsMu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	dv.subs[s] = struct{}{}
	dv.subsMu.Unlock()
	go s.forward()
	cancel := func() {
		dv.subsMu.Lock()
		delete(dv.subs, s)
		dv.subsMu.Unlock()
		s.close()
	}
	return s.ch, cancel
}

func (s *subscriber) close() { s.once.Do(func() { close(s.stop) }) }

// forward hands queued events to the channel in order. After end it closes the
// channel once the queue is empty; after stop it closes it at once.
func (s *subscriber) forward() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			ending := s.ending
			s.mu.Unlock()
			if ending {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		e := s.q[0]
		s.q = s.q[1:]
		s.mu.Unlock()
		select {
		case s.ch <- e:
		case <-s.stop:
			return
		}
	}
}

// end closes the channel after what is queued has been read.
func (s *subscriber) end() {
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	s.q = append(s.q, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// publish sends an event to every subscriber.
func (dv *Device) publish(e Event) {
	dv.subsMu.Lock()
	defer dv.subsMu.Unlock()
	for s := range dv.subs {
		s.push(e)
	}
}

// closeSubscribers ends every subscription once its reader has taken the events
// already queued (the last being EventWiped).
func (dv *Device) closeSubscribers() {
	dv.subsMu.Lock()
	subs := dv.subs
	dv.subs = make(map[*subscriber]struct{})
	dv.subsMu.Unlock()
	for s := range subs {
		s.end()
	}
}
