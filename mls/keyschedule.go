package mls

import (
	"crypto/hpke"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// The key schedule of RFC 9420 §8.

// Labels of the key schedule (RFC 9420 §8, Table 4, §8.3, §8.5, §12.4.3.1).
const (
	labelJoiner         = "joiner"
	labelWelcomeSecret  = "welcome"
	labelEpoch          = "epoch"
	labelInit           = "init"
	labelSenderData     = "sender data"
	labelEncryption     = "encryption"
	labelExporter       = "exporter"
	labelExternal       = "external"
	labelConfirm        = "confirm"
	labelMembership     = "membership"
	labelResumption     = "resumption"
	labelAuthentication = "authentication"
	labelExported       = "exported"

	// labelExternalInitSecret is the HPKE exporter context of §8.3; unlike the other
	// labels it is used verbatim, with its "MLS 1.0 " prefix written out.
	labelExternalInitSecret = "MLS 1.0 external init secret"
)

// ConfirmationKey is the confirmation_key of an epoch (RFC 9420 §8, Table 4), the MAC
// key of the confirmation_tag (§6.1).
type ConfirmationKey []byte

// MembershipKey is the membership_key of an epoch (RFC 9420 §8, Table 4), the MAC key
// of a PublicMessage's membership_tag (§6.2).
type MembershipKey []byte

// epochSecrets are the secrets of one epoch (RFC 9420 §8):
//
//	                 init_secret_[n-1]
//	                       |
//	                       |
//	                       V
//	 commit_secret --> KDF.Extract
//	                       |
//	                       |
//	                       V
//	               ExpandWithLabel(., "joiner", GroupContext_[n], KDF.Nh)
//	                       |
//	                       |
//	                       V
//	                  joiner_secret
//	                       |
//	                       |
//	                       V
//	psk_secret (or 0) --> KDF.Extract
//	                       |
//	                       |
//	                       +--> DeriveSecret(., "welcome")
//	                       |    = welcome_secret
//	                       |
//	                       V
//	               ExpandWithLabel(., "epoch", GroupContext_[n], KDF.Nh)
//	                       |
//	                       |
//	                       V
//	                  epoch_secret
//	                       |
//	                       |
//	                       +--> DeriveSecret(., <label>)
//	                       |    = <secret>
//	                       |
//	                       V
//	                 DeriveSecret(., "init")
//	                       |
//	                       |
//	                       V
//	                 init_secret_[n]
//
// where, in KDF.Extract, the arrow from above is the salt and the one from the left
// the input keying material, and the secrets derived from epoch_secret are those of
// Table 4:
//
//	| Label            | Secret              | Purpose                                   |
//	|------------------|---------------------|-------------------------------------------|
//	| "sender data"    | sender_data_secret  | Deriving keys to encrypt sender data      |
//	| "encryption"     | encryption_secret   | Deriving message encryption keys          |
//	| "exporter"       | exporter_secret     | Deriving exported secrets                 |
//	| "external"       | external_secret     | Deriving the external init key            |
//	| "confirm"        | confirmation_key    | Computing the confirmation MAC for an epoch |
//	| "membership"     | membership_key      | Computing the membership MAC for a PublicMessage |
//	| "resumption"     | resumption_psk      | Proving membership in this epoch (via a PSK injected later) |
//	| "authentication" | epoch_authenticator | Confirming that two clients have the same view of the group |
//
// epoch_secret itself is deleted once these are derived. joiner_secret and
// welcome_secret are kept for the committer to build a Welcome; it (or any holder)
// clears them with forgetWelcome when done.
type epochSecrets struct {
	joinerSecret  []byte
	welcomeSecret []byte

	senderDataSecret   []byte
	encryptionSecret   []byte
	exporterSecret     []byte
	externalSecret     []byte
	confirmationKey    ConfirmationKey
	membershipKey      MembershipKey
	resumptionPSK      []byte
	epochAuthenticator []byte

	// initSecret is init_secret_[n], the input of the next epoch's key schedule.
	initSecret []byte
}

// zeroIfEmpty returns secret, or the all-zero vector of KDF.Nh bytes that RFC 9420
// §8 uses in place of an absent commit_secret or psk_secret.
func zeroIfEmpty(cs CipherSuite, secret []byte) []byte {
	if len(secret) == 0 {
		return make([]byte, cs.Nh())
	}
	return secret
}

// newEpochSecrets runs the key schedule of RFC 9420 §8 from the previous epoch's
// init_secret, the commit_secret of the Commit (nil for a Commit without a path,
// meaning the all-zero vector), the psk_secret (nil when no PSK is injected) and the
// serialized GroupContext of the new epoch.
func newEpochSecrets(cs CipherSuite, initSecret, commitSecret, pskSecret, groupContext []byte) *epochSecrets {
	prk := cs.extract(initSecret, zeroIfEmpty(cs, commitSecret))
	joinerSecret := cs.ExpandWithLabel(prk, labelJoiner, groupContext, cs.Nh())
	clear(prk)
	e := epochSecretsFromJoiner(cs, joinerSecret, pskSecret, groupContext)
	clear(joinerSecret)
	return e
}

// memberSecret is the output of the second KDF.Extract of the key schedule, from
// which both welcome_secret and epoch_secret are derived.
func memberSecret(cs CipherSuite, joinerSecret, pskSecret []byte) []byte {
	return cs.extract(joinerSecret, zeroIfEmpty(cs, pskSecret))
}

// deriveWelcomeSecret computes welcome_secret from the joiner_secret and psk_secret
// of a Welcome's GroupSecrets. A joiner needs it before it can read the GroupContext,
// which is inside the GroupInfo that welcome_secret encrypts.
func deriveWelcomeSecret(cs CipherSuite, joinerSecret, pskSecret []byte) []byte {
	m := memberSecret(cs, joinerSecret, pskSecret)
	defer clear(m)
	return cs.DeriveSecret(m, labelWelcomeSecret)
}

// epochSecretsFromJoiner runs the key schedule from joiner_secret, as a new member
// does with the GroupSecrets of a Welcome (RFC 9420 §12.4.3.1). The returned secrets
// keep their own copy of joinerSecret.
func epochSecretsFromJoiner(cs CipherSuite, joinerSecret, pskSecret, groupContext []byte) *epochSecrets {
	m := memberSecret(cs, joinerSecret, pskSecret)
	e := &epochSecrets{
		joinerSecret:  append([]byte{}, joinerSecret...),
		welcomeSecret: cs.DeriveSecret(m, labelWelcomeSecret),
	}
	epochSecret := cs.ExpandWithLabel(m, labelEpoch, groupContext, cs.Nh())
	clear(m)
	e.senderDataSecret = cs.DeriveSecret(epochSecret, labelSenderData)
	e.encryptionSecret = cs.DeriveSecret(epochSecret, labelEncryption)
	e.exporterSecret = cs.DeriveSecret(epochSecret, labelExporter)
	e.externalSecret = cs.DeriveSecret(epochSecret, labelExternal)
	e.confirmationKey = cs.DeriveSecret(epochSecret, labelConfirm)
	e.membershipKey = cs.DeriveSecret(epochSecret, labelMembership)
	e.resumptionPSK = cs.DeriveSecret(epochSecret, labelResumption)
	e.epochAuthenticator = cs.DeriveSecret(epochSecret, labelAuthentication)
	e.initSecret = cs.DeriveSecret(epochSecret, labelInit)
	clear(epochSecret)
	return e
}

// forgetWelcome deletes joiner_secret and welcome_secret, once the Welcome of the
// epoch has been built (or was never to be).
func (e *epochSecrets) forgetWelcome() {
	clear(e.joinerSecret)
	clear(e.welcomeSecret)
	e.joinerSecret, e.welcomeSecret = nil, nil
}

// erase deletes every secret of the epoch.
func (e *epochSecrets) erase() {
	for _, s := range e.all() {
		clear(*s)
		*s = nil
	}
}

// all lists the secrets in their storage order.
func (e *epochSecrets) all() []*[]byte {
	return []*[]byte{
		&e.joinerSecret, &e.welcomeSecret,
		&e.senderDataSecret, &e.encryptionSecret, &e.exporterSecret, &e.externalSecret,
		(*[]byte)(&e.confirmationKey), (*[]byte)(&e.membershipKey),
		&e.resumptionPSK, &e.epochAuthenticator, &e.initSecret,
	}
}

// marshal writes the secrets for group-state storage, each as opaque<V> in the order
// of the struct (joiner_secret and welcome_secret empty once forgotten).
func (e *epochSecrets) marshal(b *cryptobyte.Builder) {
	for _, s := range e.all() {
		addOpaque(b, *s)
	}
}

// unmarshal reads secrets written by marshal for suite cs, rejecting wrong sizes.
func (e *epochSecrets) unmarshal(s *cryptobyte.String, cs CipherSuite) bool {
	*e = epochSecrets{}
	for i, p := range e.all() {
		if !readOpaque(s, p) {
			return false
		}
		switch {
		case len(*p) == cs.Nh():
		case i < 2 && len(*p) == 0: // joiner_secret, welcome_secret
			*p = nil
		default:
			return false
		}
	}
	return true
}

// maxExportLength is the largest MLS-Exporter output: ExpandWithLabel encodes the
// length in a uint16, and HKDF-Expand stops at 255 hash blocks.
func maxExportLength(cs CipherSuite) int { return min(1<<16-1, 255*cs.Nh()) }

// export is MLS-Exporter (RFC 9420 §8.5):
//
//	MLS-Exporter(Label, Context, Length) =
//	       ExpandWithLabel(DeriveSecret(exporter_secret, Label),
//	                         "exported", Hash(Context), Length)
func (e *epochSecrets) export(cs CipherSuite, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > maxExportLength(cs) {
		return nil, fmt.Errorf("mls: exporter length %d out of range [0, %d]", length, maxExportLength(cs))
	}
	s := cs.DeriveSecret(e.exporterSecret, label)
	defer clear(s)
	return cs.ExpandWithLabel(s, labelExported, cs.Hash(context), length), nil
}

// externalKeyPair derives the epoch's external key pair from external_secret
// (RFC 9420 §8.3):
//
//	external_priv, external_pub = KEM.DeriveKeyPair(external_secret)
//
// external_pub is published in the GroupInfo's external_pub extension so that
// non-members can join with an external Commit.
func (e *epochSecrets) externalKeyPair(cs CipherSuite) (*HPKEPrivateKey, error) {
	return cs.DeriveKeyPair(e.externalSecret)
}

// externalInit is the joiner's side of an external Commit (RFC 9420 §8.3): it
// encapsulates to the group's external_pub and exports the init_secret of the
// epoch the Commit creates, in place of the previous epoch's.
//
//	kem_output, context = SetupBaseS(external_pub, "")
//	init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)
//
// kem_output goes in the ExternalInit proposal. HPKE draws its ephemeral
// randomness from crypto/rand.
func externalInit(cs CipherSuite, externalPub HPKEPublicKey) (kemOutput, initSecret []byte, err error) {
	p := cs.p()
	pk, err := p.kem.NewPublicKey(externalPub)
	if err != nil {
		return nil, nil, errors.New("mls: external init: bad external_pub")
	}
	kemOutput, sender, err := hpke.NewSender(pk, p.kdf, p.hpkeAEAD, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	initSecret, err = sender.Export(labelExternalInitSecret, cs.Nh())
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	return kemOutput, initSecret, nil
}

// externalInitSecret is the members' side of an external Commit (RFC 9420 §8.3):
// from the kem_output of its ExternalInit proposal and the epoch's external key
// pair, it recovers the init_secret the joiner exported.
//
//	context = SetupBaseR(kem_output, external_priv, "")
//	init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)
func (e *epochSecrets) externalInitSecret(cs CipherSuite, kemOutput []byte) ([]byte, error) {
	priv, err := e.externalKeyPair(cs)
	if err != nil {
		return nil, err
	}
	p := cs.p()
	r, err := hpke.NewRecipient(kemOutput, priv.key, p.kdf, p.hpkeAEAD, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: external init kem_output", ErrDecrypt)
	}
	initSecret, err := r.Export(labelExternalInitSecret, cs.Nh())
	if err != nil {
		return nil, fmt.Errorf("mls: external init: %w", err)
	}
	return initSecret, nil
}

// welcomeKeyNonce derives the AEAD key and nonce of a Welcome's encrypted_group_info
// from welcome_secret (RFC 9420 §12.4.3.1):
//
//	welcome_nonce = ExpandWithLabel(welcome_secret, "nonce", "", AEAD.Nn)
//	welcome_key = ExpandWithLabel(welcome_secret, "key", "", AEAD.Nk)
func welcomeKeyNonce(cs CipherSuite, welcomeSecret []byte) (key, nonce []byte) {
	key = cs.ExpandWithLabel(welcomeSecret, labelKey, nil, cs.Nk())
	nonce = cs.ExpandWithLabel(welcomeSecret, labelNonce, nil, cs.Nn())
	return key, nonce
}
