package mls

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// passiveCase is the passive-client vector format of the MLS working group's
// test-vectors.md: a client joins from a Welcome and then processes every epoch's
// proposals and commit, checking the epoch authenticator after each.
type passiveCase struct {
	CipherSuite  uint16 `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID hexBytes `json:"psk_id"`
		PSK   hexBytes `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                hexBytes `json:"key_package"`
	SignaturePriv             hexBytes `json:"signature_priv"`
	EncryptionPriv            hexBytes `json:"encryption_priv"`
	InitPriv                  hexBytes `json:"init_priv"`
	Welcome                   hexBytes `json:"welcome"`
	RatchetTree               hexBytes `json:"ratchet_tree"`
	InitialEpochAuthenticator hexBytes `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []hexBytes `json:"proposals"`
		Commit             hexBytes   `json:"commit"`
		EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// vectorConfig is the Config passive clients use: every credential is accepted (the
// vectors use basic credentials of no authority) and the clock is left out, since the
// vectors' KeyPackages were made with lifetimes around the day they were generated.
func vectorConfig(psks map[string][]byte) Config {
	return Config{
		Validator: AcceptAllCredentials,
		Now:       func() time.Time { return time.Time{} },
		ExternalPSK: func(id []byte) ([]byte, bool) {
			psk, ok := psks[string(id)]
			return psk, ok
		},
	}
}

func runPassiveCase(t *testing.T, tc *passiveCase) {
	cs := suiteOrSkip(t, tc.CipherSuite)
	psks := map[string][]byte{}
	for _, p := range tc.ExternalPSKs {
		psks[string(p.PSKID)] = p.PSK
	}
	kpMsg, err := UnmarshalMLSMessage(tc.KeyPackage)
	if err != nil || kpMsg.KeyPackage == nil {
		t.Fatalf("key package: %v", err)
	}
	wMsg, err := UnmarshalMLSMessage(tc.Welcome)
	if err != nil || wMsg.Welcome == nil {
		t.Fatalf("welcome: %v", err)
	}
	initKey, err := NewHPKEPrivateKey(cs, tc.InitPriv)
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := NewHPKEPrivateKey(cs, tc.EncryptionPriv)
	if err != nil {
		t.Fatal(err)
	}
	sigKey, err := NewSignaturePrivateKey(cs, tc.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	priv := &KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey, SignatureKey: sigKey}
	g, err := JoinGroup(wMsg.Welcome, kpMsg.KeyPackage, priv, JoinOptions{RatchetTree: tc.RatchetTree}, vectorConfig(psks))
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if !equalBytes(g.EpochAuthenticator(), tc.InitialEpochAuthenticator) {
		t.Fatalf("epoch authenticator after join differs")
	}
	for i, ep := range tc.Epochs {
		for j, p := range ep.Proposals {
			msg, err := UnmarshalMLSMessage(p)
			if err != nil {
				t.Fatalf("epoch %d proposal %d: %v", i, j, err)
			}
			if _, err := g.Process(msg); err != nil {
				t.Fatalf("epoch %d proposal %d: %v", i, j, err)
			}
		}
		msg, err := UnmarshalMLSMessage(ep.Commit)
		if err != nil {
			t.Fatalf("epoch %d commit: %v", i, err)
		}
		if _, err := g.Process(msg); err != nil {
			t.Fatalf("epoch %d commit: %v", i, err)
		}
		if !equalBytes(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			t.Fatalf("epoch %d: epoch authenticator differs", i)
		}
	}
}

// passiveRequired are the official passive-client vector files; a missing one fails.
var passiveRequired = []string{
	"passive-client-welcome.json",
	"passive-client-handling-commit.json",
	"passive-client-random.json",
}

// TestPassiveClient runs every passive-client vector file: the official ones and
// the interop runner's (testdata/interop-passive/), and any other file dropped
// into either place with the same format.
func TestPassiveClient(t *testing.T) {
	files := map[string]bool{}
	for _, name := range passiveRequired {
		files[name] = true // loadVectors fails the subtest if it is missing
	}
	for _, pattern := range []string{"passive-client-*.json", filepath.Join("interop-passive", "*.json")} {
		matches, err := filepath.Glob(filepath.Join("testdata", pattern))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(pattern, "interop-passive") && len(matches) == 0 {
			t.Fatal("no interop passive vectors in testdata/interop-passive")
		}
		for _, m := range matches {
			files[strings.TrimPrefix(m, "testdata"+string(filepath.Separator))] = true
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) { testPassiveFile(t, name) })
	}
}

func testPassiveFile(t *testing.T, name string) {
	cases := loadVectors[passiveCase](t, name)
	c := vectorCount{name: name}
	for i := range cases {
		c.run(t, fmt.Sprint(i), func(t *testing.T) { runPassiveCase(t, &cases[i]) })
	}
	c.report(t)
	if testing.Verbose() {
		fmt.Fprintf(os.Stdout, "%s: %d cases\n", name, c.ran-c.skipped)
	}
}
