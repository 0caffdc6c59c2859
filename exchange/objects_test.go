package exchange

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"mahfooz/authority"
	"mahfooz/mls"
	"mahfooz/wire"
)

func TestBlobs(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, chen, dina := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen"), enrolMLS(t, e.a, "Dina")
	a, b, c, d := e.session(t, amina), e.session(t, bilal), e.session(t, chen), e.session(t, dina)
	id := wire.BlobID{0xb1}
	chunks := [][]byte{bytes.Repeat([]byte("first chunk "), 1000), []byte("second and last chunk")}

	a.ok(&wire.CreateBlob{BlobID: id, Recipients: ids(bilal, chen)})
	a.ok(&wire.CreateBlob{BlobID: id, Recipients: ids(bilal, chen)}) // a retry
	wantErr(t, a.call(&wire.CreateBlob{BlobID: id, Recipients: ids(bilal)}), wire.CodeConflict)
	wantErr(t, a.call(&wire.CreateBlob{BlobID: wire.BlobID{2}, Recipients: []wire.DeviceID{{0xee}}}), wire.CodeInvalidRequest)
	wantErr(t, b.call(&wire.UploadChunk{BlobID: id, Index: 0, Data: []byte("not mine")}), wire.CodeForbidden)
	wantErr(t, a.call(&wire.UploadChunk{BlobID: id, Index: 1, Data: chunks[1]}), wire.CodeInvalidRequest)
	wantErr(t, a.call(&wire.UploadChunk{BlobID: wire.BlobID{3}, Index: 0, Data: chunks[0]}), wire.CodeNotFound)
	a.ok(&wire.UploadChunk{BlobID: id, Index: 0, Data: chunks[0]})
	a.ok(&wire.UploadChunk{BlobID: id, Index: 1, Last: true, Data: chunks[1]})
	wantErr(t, a.call(&wire.UploadChunk{BlobID: id, Index: 2, Last: true, Data: chunks[1]}), wire.CodeInvalidRequest)

	download := func(s *session) {
		t.Helper()
		for i, want := range chunks {
			got, ok := s.call(&wire.DownloadChunk{BlobID: id, Index: uint32(i)}).(*wire.BlobChunk)
			if !ok || got.BlobID != id || got.Index != uint32(i) || got.Last != (i == len(chunks)-1) || !bytes.Equal(got.Data, want) {
				t.Fatalf("chunk %d: %#v", i, got)
			}
		}
	}
	wantErr(t, d.call(&wire.DownloadChunk{BlobID: id, Index: 0}), wire.CodeForbidden)
	wantErr(t, a.call(&wire.DownloadChunk{BlobID: id, Index: 0}), wire.CodeForbidden) // the owner is not a recipient
	wantErr(t, b.call(&wire.DownloadChunk{BlobID: id, Index: 5}), wire.CodeNotFound)
	download(b)
	download(b) // until everyone has it, a recipient may fetch again
	download(c)
	// Every recipient has the last chunk: the blob is gone, from the files too.
	waitFor(t, "the blob to be deleted", func() bool { st := e.stats(t); return st.Blobs == 0 && st.BlobBytes == 0 })
	wantErr(t, b.call(&wire.DownloadChunk{BlobID: id, Index: 0}), wire.CodeNotFound)
	if in := e.dbHolds(t, chunks[0][:64]); len(in) > 0 {
		t.Errorf("downloaded ciphertext still in %v", in)
	}

	// A blob nobody fetched goes at its TTL.
	id2 := wire.BlobID{0xb2}
	a.ok(&wire.CreateBlob{BlobID: id2, TTLSeconds: 60, Recipients: ids(bilal)})
	a.ok(&wire.UploadChunk{BlobID: id2, Index: 0, Last: true, Data: []byte("x")})
	e.clock.Advance(time.Minute)
	waitFor(t, "the blob to expire", func() bool { return e.stats(t).Blobs == 0 })
	wantErr(t, b.call(&wire.DownloadChunk{BlobID: id2, Index: 0}), wire.CodeNotFound)
}

func TestBlobQuota(t *testing.T) {
	e := newStoreEnv(t, func(c *Config) { c.Quotas.BlobBytes = 100 })
	amina, bilal := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal")
	a := e.session(t, amina)
	a.ok(&wire.CreateBlob{BlobID: wire.BlobID{1}, Recipients: ids(bilal)})
	a.ok(&wire.UploadChunk{BlobID: wire.BlobID{1}, Index: 0, Data: make([]byte, 80)})
	wantErr(t, a.call(&wire.UploadChunk{BlobID: wire.BlobID{1}, Index: 1, Data: make([]byte, 80)}), wire.CodeQuotaExceeded)
}

func TestKeyPackages(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina, bilal, bilal2, chen := enrolMLS(t, e.a, "Amina"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Bilal"), enrolMLS(t, e.a, "Chen")
	a, b, b2, c := e.session(t, amina), e.session(t, bilal), e.session(t, bilal2), e.session(t, chen)
	now := e.clock.Now()
	kp1, kp2, lr := keyPackage(t, bilal, now), keyPackage(t, bilal, now), keyPackage(t, bilal, now)
	b.ok(&wire.UploadKeyPackages{KeyPackages: [][]byte{kp1, kp2}})
	b.ok(&wire.UploadKeyPackages{KeyPackages: [][]byte{lr}, LastResort: true})

	claim := func(s *session, m *wire.ClaimKeyPackage) []wire.ClaimedKeyPackage {
		t.Helper()
		a := s.call(m)
		got, ok := a.(*wire.KeyPackages)
		if !ok {
			t.Fatalf("claim answered with %s", describe(a))
		}
		return got.KeyPackages
	}
	byDevice := &wire.ClaimKeyPackage{Device: bilal.wid()}
	for i, want := range [][]byte{kp1, kp2, lr, lr} {
		got := claim(a, byDevice)
		if len(got) != 1 || got[0].Device != bilal.wid() || !bytes.Equal(got[0].KeyPackage, want) {
			t.Errorf("claim %d: not the expected package (one-time ones once, oldest first, then the last resort)", i)
		}
	}
	wantErr(t, a.call(&wire.ClaimKeyPackage{Device: chen.wid()}), wire.CodeNotFound) // Chen has none
	wantErr(t, a.call(&wire.ClaimKeyPackage{Device: wire.DeviceID{0xee}}), wire.CodeNotFound)
	wantErr(t, b.call(byDevice), wire.CodeForbidden) // one's own

	// By official: one package for each of the official's devices that has one,
	// never the claimer's own.
	b2.ok(&wire.UploadKeyPackages{KeyPackages: [][]byte{keyPackage(t, bilal2, now), keyPackage(t, bilal2, now)}})
	got := claim(a, &wire.ClaimKeyPackage{Official: "Bilal"})
	if len(got) != 2 || got[0].Device == got[1].Device {
		t.Errorf("claim for an official with two devices: %d packages", len(got))
	}
	got = claim(b, &wire.ClaimKeyPackage{Official: "Bilal"})
	if len(got) != 1 || got[0].Device != bilal2.wid() {
		t.Errorf("claim of one's own official: %+v, want only the other device", got)
	}
	wantErr(t, a.call(&wire.ClaimKeyPackage{Official: "Chen"}), wire.CodeNotFound)
	wantErr(t, a.call(&wire.ClaimKeyPackage{Official: "Nobody"}), wire.CodeNotFound)

	// A device cannot stock packages for another, nor anything that is not a
	// valid KeyPackage.
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{keyPackage(t, bilal, now)}}), wire.CodeForbidden)
	forged := chen
	forged.key = bilal.key // Chen's certificate over Bilal's key: the credential check fails
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{keyPackage(t, forged, now)}}), wire.CodeInvalidRequest)
	tampered := keyPackage(t, chen, now)
	tampered[len(tampered)-1] ^= 1 // the signature
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{tampered}}), wire.CodeInvalidRequest)
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{mlsPayload(testGroup, 1, 1, "x")}}), wire.CodeInvalidRequest)
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{[]byte("garbage")}}), wire.CodeInvalidRequest)
	basic, _, err := mls.NewKeyPackage(mls.DefaultCipherSuite, mls.NewBasicCredential(chen.id[:]), chen.key, mls.KeyPackageOptions{}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{mls.NewKeyPackageMessage(basic).Bytes()}}), wire.CodeInvalidRequest)
	// One bad package refuses the whole upload.
	wantErr(t, c.call(&wire.UploadKeyPackages{KeyPackages: [][]byte{keyPackage(t, chen, now), tampered}}), wire.CodeInvalidRequest)
	if n, _, err := e.store.KeyPackageCount(t.Context(), chen.wid()); err != nil || n != 0 {
		t.Errorf("refused uploads stored %d packages (%v)", n, err)
	}
}

func TestDirectoryAndRenewal(t *testing.T) {
	e := newStoreEnv(t, nil)
	amina := enrolMLS(t, e.a, "Amina")
	a := e.session(t, amina)
	get := func() *authority.SignedDirectory {
		t.Helper()
		m, ok := a.call(&wire.GetDirectory{}).(*wire.Directory)
		if !ok {
			t.Fatal("GetDirectory not answered with Directory")
		}
		d, err := authority.VerifyDirectory(e.a.RootCertificate(), m.Signed)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d1 := get()
	if len(d1.Officials) != 1 || d1.Officials[0].Name != "Amina" {
		t.Fatalf("directory %+v", d1.Officials)
	}
	e.clock.Advance(time.Second)
	if again := get(); !bytes.Equal(again.Raw, d1.Raw) {
		t.Error("directory signed again although nothing changed")
	}

	// An enrolment elsewhere: connected devices are told, and the directory shows it.
	enrolMLS(t, e.a, "Bilal")
	select {
	case <-a.dirUp:
	case <-time.After(waitTime):
		t.Fatal("no DirectoryUpdated after an enrolment")
	}
	if d2 := get(); d2.Sequence <= d1.Sequence || len(d2.Officials) != 2 {
		t.Errorf("directory after enrolment: sequence %d (was %d), %d officials", d2.Sequence, d1.Sequence, len(d2.Officials))
	}

	// Renewal, for a new key.
	k, err := mls.GenerateSignatureKey(mls.DefaultCipherSuite, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := a.call(&wire.RenewCertificate{CSR: csrFor(t, k)}).(*wire.CertificateResult)
	if !ok || len(res.Chain) != 2 {
		t.Fatalf("renewal: %#v", res)
	}
	cert, id, err := authority.VerifyDeviceCertificate(e.a.RootCertificate(), res.Chain[0], e.clock.Now())
	if err != nil || id != amina.id {
		t.Fatalf("renewed certificate: device %s, %v", id, err)
	}
	if !equalKey(cert, k) {
		t.Errorf("renewed certificate is not for the new key: %T", cert.PublicKey)
	}
	wantErr(t, a.call(&wire.RenewCertificate{CSR: []byte("not a CSR")}), wire.CodeInvalidRequest)
}

func equalKey(cert *x509.Certificate, k *mls.SignaturePrivateKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := cert.PublicKey.(equaler)
	return ok && pub.Equal(k.Signer().Public())
}
