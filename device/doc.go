// Package device is the Mahfooz client core: what a phone app, the command line
// and the local web UI embed. A Device is one enrolled device of one official: its
// encrypted vault, its connection to the exchange, and its conversations.
//
//	dv, err := device.Enroll(ctx, cfg, "exchange.example:7443", ticketText) // once
//	dv, err := device.Open(cfg)                                            // afterwards
//	go dv.Run(ctx)                                       // stay connected (an app)
//	err = dv.Sync(ctx)                                   // or catch up once (a command)
//	m, err := dv.SendText(ctx, device.ConversationRef{To: "Amina Yusuf"}, "on my way")
//	events, stop := dv.Subscribe()
//
// # Conversations are MLS groups
//
// Every conversation is an MLS group (RFC 9420, package mls) on the post-quantum
// suite MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519, with a random 32-byte
// group ID, handshakes sent as PrivateMessages and content padded to 256-byte
// blocks. A member's credential is its device certificate chain, and its MLS
// signature key is the device's Ed25519 key. Every credential a group accepts must
// be a device certificate of the authority's root for a device that the latest
// verified signed directory lists as active; a certificate that has since expired
// is still accepted for a member whose device the directory lists, now, with a
// current certificate for the same key (a member keeps the certificate it joined
// with in its leaf).
//
//   - A direct conversation with an official is a group of all active devices of
//     both officials. It starts with the first message sent to them. If both
//     officials start one at once, two groups carry it: the device shows them as
//     one and sends on the one with the smaller group ID.
//   - A group conversation has a name and any set of officials.
//   - After every commit that adds devices, the committer sends the
//     conversation's kind, name and disappearing timer in the group, so that
//     those who join learn them.
//   - Every roster change (a device added or removed, a join) becomes a message in
//     the conversation, so nobody is added or removed unseen.
//   - Devices the directory no longer lists as active (revoked, or whose
//     certificate expired unrenewed: such a device can never renew) are removed
//     from every group by the first member to notice; the exchange lets one commit per epoch
//     win and the others take it in and look again. New devices of a
//     conversation's officials are added by the member with the lowest leaf.
//   - Every commit of a device carries a path, and a device that has not
//     committed in a group for a week commits fresh keys, so that a compromise
//     of its keys stops mattering within a week (post-compromise security).
//   - A revoked device wipes its vault as soon as the exchange tells it.
//   - Disappearing messages carry their expiry; every device deletes them (and the
//     copies of their attachments SaveFile wrote) when it passes. The exchange
//     keeps them no longer than the timer either.
//   - Attachments are encrypted in chunks under a fresh key (package attach) and
//     uploaded for the group's other devices only; the key travels in the MLS
//     message.
//
// # State and delivery
//
// The vault (package vault) is the only persistent state: identity key,
// certificate chain, authority root, exchange address, verified directory, group
// states, KeyPackage private keys, history, outbox, and the IDs of processed
// messages. A group's state is stored before anything made from it leaves the
// device, so a generation is never used twice, even across a crash. Each Send
// stays in the outbox, with the same message ID, until the exchange answered it;
// a commit's outbox entry holds the group's state after it, which replaces the
// stored one only once the exchange accepted the commit. Each delivery is
// processed in one vault transaction (group state, history, deduplication record)
// before it is acknowledged, so every message reaches the history exactly once.
// A delivery that is ahead of the device (a member's message that overtook the
// Welcome or commit it follows) is held and processed once the device catches
// up. Nothing is logged of content, keys or tickets.
//
// Application content inside MLS has its own strict, versioned encoding (see
// content.go): text, file reference, disappearing timer, conversation info.
//
// Every method of a Device is safe for concurrent use; operations that change
// group state run one at a time.
package device
