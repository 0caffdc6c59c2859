package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"mahfooz/mls"
)

func init() {
	commands["demo"] = command{
		summary: "show an end-to-end encrypted group conversation, in process",
		run:     runDemo,
	}
}

// demoMember is one official's device in the demo.
type demoMember struct {
	name string
	sig  *mls.SignaturePrivateKey
	kp   *mls.KeyPackage
	priv *mls.KeyPackagePrivate
	g    *mls.Group
}

// runDemo holds a three-member conversation on the default post-quantum suite and
// prints what each step did. The exchange and enrolled devices are not part of it yet:
// messages pass between the members' group states in this process, as bytes.
func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mahfooz demo\n\nRuns an MLS group of three members in this process and prints each step.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return demo(os.Stdout)
}

func demo(out io.Writer) error {
	cs := mls.DefaultCipherSuite
	cfg := mls.Config{Validator: mls.AcceptAllCredentials} // the authority's check comes with enrolment
	fmt.Fprintf(out, "cipher suite: %v\n", cs)
	var ms []*demoMember
	for _, name := range []string{"alice", "bob", "carol"} {
		sig, err := mls.GenerateSignatureKey(cs, rand.Reader)
		if err != nil {
			return err
		}
		kp, priv, err := mls.NewKeyPackage(cs, mls.NewBasicCredential([]byte(name)), sig, mls.KeyPackageOptions{}, time.Now(), rand.Reader)
		if err != nil {
			return err
		}
		ms = append(ms, &demoMember{name: name, sig: sig, kp: kp, priv: priv})
	}
	alice, bob, carol := ms[0], ms[1], ms[2]
	var err error
	alice.g, err = mls.NewGroup(cs, mls.GroupID("demo conversation"), mls.NewBasicCredential([]byte("alice")), alice.sig, mls.CreateOptions{}, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "alice created the group")

	res, err := alice.g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{
		{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *bob.kp}},
		{Type: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *carol.kp}},
	}})
	if err != nil {
		return err
	}
	if _, err := alice.g.MergePendingCommit(); err != nil {
		return err
	}
	welcome := res.Welcome.Bytes()
	for _, m := range []*demoMember{bob, carol} {
		w, err := mls.UnmarshalMLSMessage(welcome)
		if err != nil {
			return err
		}
		if m.g, err = mls.JoinGroup(w.Welcome, m.kp, m.priv, mls.JoinOptions{}, cfg); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "alice added bob and carol (welcome: %d bytes)\n", len(welcome))
	if err := agree(out, ms); err != nil {
		return err
	}

	secret := []byte("the meeting moves to 15:00")
	msg, err := bob.g.Protect(secret, nil)
	if err != nil {
		return err
	}
	wireBytes := msg.Bytes()
	fmt.Fprintf(out, "bob sent %d bytes; plaintext visible on the wire: %v\n", len(wireBytes), bytes.Contains(wireBytes, secret))
	for _, m := range []*demoMember{alice, carol} {
		r, err := deliver(m, wireBytes)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s read: %q\n", m.name, r.ApplicationData)
	}

	res, err = bob.g.Commit(mls.CommitOptions{ForcePath: true})
	if err != nil {
		return err
	}
	if _, err := bob.g.MergePendingCommit(); err != nil {
		return err
	}
	for _, m := range []*demoMember{alice, carol} {
		if _, err := deliver(m, res.Commit.Bytes()); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "bob refreshed his keys (a commit with a new path)")
	if err := agree(out, ms); err != nil {
		return err
	}

	res, err = alice.g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{
		{Type: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: carol.g.OwnLeaf()}}}})
	if err != nil {
		return err
	}
	if _, err := alice.g.MergePendingCommit(); err != nil {
		return err
	}
	for _, m := range []*demoMember{bob, carol} {
		r, err := deliver(m, res.Commit.Bytes())
		if err != nil {
			return err
		}
		for _, gone := range r.Commit.Removed {
			fmt.Fprintf(out, "  %s sees: %s was removed\n", m.name, gone.Credential.Identity)
		}
	}
	msg, err = alice.g.Protect([]byte("carol is no longer here"), nil)
	if err != nil {
		return err
	}
	if _, err := deliver(carol, msg.Bytes()); err == nil {
		return errors.New("a removed member read a message")
	}
	r, err := deliver(bob, msg.Bytes())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "alice wrote after the removal: bob read %q, carol could not read it\n", r.ApplicationData)
	return agree(out, ms[:2])
}

// deliver parses bytes as they arrive from the network and processes them.
func deliver(m *demoMember, data []byte) (*mls.Received, error) {
	msg, err := mls.UnmarshalMLSMessage(data)
	if err != nil {
		return nil, err
	}
	return m.g.Process(msg)
}

// agree prints the epoch authenticator every member derived and fails if they differ.
func agree(out io.Writer, ms []*demoMember) error {
	first := ms[0].g.EpochAuthenticator()
	for _, m := range ms[1:] {
		if !bytes.Equal(m.g.EpochAuthenticator(), first) {
			return fmt.Errorf("%s disagrees with %s about the group", m.name, ms[0].name)
		}
	}
	fmt.Fprintf(out, "  epoch %d: all %d members share epoch authenticator %s…\n", ms[0].g.Epoch(), len(ms), hex.EncodeToString(first[:8]))
	return nil
}
