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

func TestPassiveClientWelcome(t *testing.T) { testPassiveFile(t, "passive-client-welcome.json") }

func TestPassiveClientHandlingCommit(t *testing.T) {
	testPassiveFile(t, "passive-client-handling-commit.json")
}

func TestPassiveClientRandom(t *testing.T) { testPassiveFile(t, "passive-client-random.json") }

// TestPassiveClientInterop runs every passive-client vector file of the interop
// runner's scenarios, so files dropped into testdata/interop-passive run too.
func TestPassiveClientInterop(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "interop-passive", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no interop passive vectors in testdata/interop-passive")
	}
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) { testPassiveFile(t, filepath.Join("interop-passive", filepath.Base(f))) })
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
