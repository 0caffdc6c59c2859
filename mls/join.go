package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Joining a group from a Welcome (RFC 9420 §12.4.3.1) and making one: the two
// encryption layers of a Welcome and the signature of the GroupInfo inside it.
//
//	encrypted_group_secrets = EncryptWithLabel(init_key, "Welcome",
//	                                           encrypted_group_info, group_secrets)
//	encrypted_group_info    = AEAD.Seal(welcome_key, welcome_nonce, "", group_info)
//
// The GroupSecrets are bound to the encrypted GroupInfo through the HPKE context,
// so a GroupInfo cannot be swapped under a joiner's secrets.

// labelWelcome is the EncryptWithLabel label of GroupSecrets (RFC 9420 §12.4.3.1).
const labelWelcome = "Welcome"

// ErrWelcomeNotForUs is returned when a Welcome holds no EncryptedGroupSecrets for
// the KeyPackage the caller tried to join with.
var ErrWelcomeNotForUs = errors.New("mls: welcome has no secrets for this key package")

// ErrInvalidGroupInfo is wrapped by every GroupInfo check that fails: a wrong
// cipher suite, or a signature that does not verify.
var ErrInvalidGroupInfo = errors.New("mls: invalid group info")

// decryptGroupSecrets finds the EncryptedGroupSecrets of w addressed to the
// KeyPackage kpRef and decrypts them with that KeyPackage's init key.
// It returns ErrWelcomeNotForUs when w has no entry for kpRef and ErrDecrypt when
// the entry does not decrypt.
func decryptGroupSecrets(cs CipherSuite, w *Welcome, kpRef KeyPackageRef, initKey *HPKEPrivateKey) (*GroupSecrets, error) {
	if w.CipherSuite != cs {
		return nil, fmt.Errorf("mls: welcome uses cipher suite %v, key package %v", w.CipherSuite, cs)
	}
	var egs *EncryptedGroupSecrets
	for i := range w.Secrets {
		if bytes.Equal(w.Secrets[i].NewMember, kpRef) {
			egs = &w.Secrets[i]
			break
		}
	}
	if egs == nil {
		return nil, ErrWelcomeNotForUs
	}
	pt, err := cs.DecryptWithLabel(initKey, labelWelcome, w.EncryptedGroupInfo, egs.EncryptedGroupSecrets)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	var gs GroupSecrets
	if err := decodeAll(pt, "GroupSecrets", gs.unmarshal); err != nil {
		return nil, err
	}
	return &gs, nil
}

// encryptGroupSecrets encrypts gs to the init key of kp, the KeyPackage of a new
// member, bound to the Welcome's encryptedGroupInfo.
func encryptGroupSecrets(cs CipherSuite, kp *KeyPackage, gs *GroupSecrets, encryptedGroupInfo []byte) (EncryptedGroupSecrets, error) {
	if kp.CipherSuite != cs {
		return EncryptedGroupSecrets{}, fmt.Errorf("mls: key package uses cipher suite %v, group %v", kp.CipherSuite, cs)
	}
	ref, err := kp.Ref()
	if err != nil {
		return EncryptedGroupSecrets{}, err
	}
	pt, err := encode(gs)
	if err != nil {
		return EncryptedGroupSecrets{}, err
	}
	defer clear(pt)
	ct, err := cs.EncryptWithLabel(kp.InitKey, labelWelcome, encryptedGroupInfo, pt)
	if err != nil {
		return EncryptedGroupSecrets{}, err
	}
	return EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: ct}, nil
}

// decryptGroupInfo decrypts the encrypted_group_info of w with the key and nonce
// derived from welcomeSecret, and checks that the GroupInfo is for w's cipher
// suite. The signature is not checked here: the signer's key is in the ratchet
// tree, which the caller has yet to obtain (see GroupInfo.verify).
func decryptGroupInfo(cs CipherSuite, welcomeSecret []byte, w *Welcome) (*GroupInfo, error) {
	if w.CipherSuite != cs {
		return nil, fmt.Errorf("mls: welcome uses cipher suite %v, want %v", w.CipherSuite, cs)
	}
	key, nonce := welcomeKeyNonce(cs, welcomeSecret)
	defer clear(key)
	pt, err := cs.open(key, nonce, nil, w.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	var gi GroupInfo
	if err := decodeAll(pt, "GroupInfo", gi.unmarshal); err != nil {
		return nil, err
	}
	if gi.GroupContext.CipherSuite != cs {
		return nil, fmt.Errorf("%w: cipher suite %v in a welcome for %v", ErrInvalidGroupInfo, gi.GroupContext.CipherSuite, cs)
	}
	return &gi, nil
}

// encryptGroupInfo encrypts a signed GroupInfo under the key and nonce derived
// from welcomeSecret, giving the encrypted_group_info of a Welcome.
func encryptGroupInfo(cs CipherSuite, welcomeSecret []byte, gi *GroupInfo) ([]byte, error) {
	pt, err := encode(gi)
	if err != nil {
		return nil, err
	}
	key, nonce := welcomeKeyNonce(cs, welcomeSecret)
	defer clear(key)
	return cs.seal(key, nonce, nil, pt)
}

// sign sets the GroupInfo's signature over GroupInfoTBS (RFC 9420 §12.4.3) with the
// signer's key; Signer must already name the signer's leaf.
func (g *GroupInfo) sign(cs CipherSuite, key *SignaturePrivateKey, rand io.Reader) error {
	sig, err := cs.SignWithLabel(key, labelGroupInfoTBS, g.tbs(), rand)
	if err != nil {
		return err
	}
	g.Signature = sig
	return nil
}

// verify checks the GroupInfo's signature with signerPub, the signature key of the
// leaf at g.Signer (RFC 9420 §12.4.3.1).
func (g *GroupInfo) verify(cs CipherSuite, signerPub SignaturePublicKey) error {
	if err := cs.VerifyWithLabel(signerPub, labelGroupInfoTBS, g.tbs(), g.Signature); err != nil {
		return fmt.Errorf("%w: signature does not verify", ErrInvalidGroupInfo)
	}
	return nil
}
