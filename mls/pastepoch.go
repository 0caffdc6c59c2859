package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// defaultPastEpochs is how many earlier epochs a member keeps keys for, so that
// application messages sent just before a commit landed can still be read.
const defaultPastEpochs = 2

// pastEpoch is what a member keeps of an earlier epoch to read application
// messages still in flight: the epoch's GroupContext (signatures cover it), its
// sender data secret, what is left of its secret tree, and its ratchet tree (for
// the senders' signature keys). Handshake messages of past epochs are refused.
type pastEpoch struct {
	epoch            uint64
	groupContext     []byte
	senderDataSecret []byte
	secrets          *secretTree
	tree             *ratchetTree
}

func (c *Config) pastEpochs() int {
	switch {
	case c.PastEpochs < 0:
		return 0
	case c.PastEpochs == 0:
		return defaultPastEpochs
	}
	return c.PastEpochs
}

// advanceTo makes next the group's state, keeping the epoch being left among the
// past epochs (and forgetting the oldest beyond the configured number, which
// deletes their keys: forward secrecy is bounded by that number of epochs).
func (g *Group) advanceTo(next *Group) {
	keep := g.cfg.pastEpochs()
	past := append([]pastEpoch{}, g.past...)
	if keep > 0 {
		past = append(past, pastEpoch{
			epoch:            g.ctx.Epoch,
			groupContext:     g.ctx.Bytes(),
			senderDataSecret: g.epoch.senderDataSecret,
			secrets:          g.secrets,
			tree:             g.tree,
		})
	}
	for len(past) > keep {
		past[0].secrets.erase()
		clear(past[0].senderDataSecret)
		past = past[1:]
	}
	*g = *next
	g.past = past
}

// pastEpochAt returns the kept state of an earlier epoch.
func (g *Group) pastEpochAt(epoch uint64) *pastEpoch {
	for i := range g.past {
		if g.past[i].epoch == epoch {
			return &g.past[i]
		}
	}
	return nil
}

func (p *pastEpoch) marshal(b *cryptobyte.Builder) {
	b.AddUint64(p.epoch)
	addOpaque(b, p.groupContext)
	addOpaque(b, p.senderDataSecret)
	p.secrets.marshal(b)
	p.tree.marshal(b)
}

func (p *pastEpoch) unmarshal(s *cryptobyte.String) bool {
	p.secrets = new(secretTree)
	return s.ReadUint64(&p.epoch) && readOpaque(s, &p.groupContext) && readOpaque(s, &p.senderDataSecret) &&
		p.secrets.unmarshal(s) && readRatchetTree(s, &p.tree)
}
