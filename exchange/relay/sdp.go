package relay

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// offer is what the relay takes from a device's SDP offer.
type offer struct {
	ufrag, pwd  string // the device's ICE credentials
	fingerprint []byte // SHA-256 of the device's DTLS certificate
	mid         string
}

// parseOffer reads an offer that must have exactly one audio section offering
// Opus as payload type OpusPayloadType, ICE credentials, a SHA-256 DTLS
// fingerprint and a DTLS role the relay can answer as server. Its errors wrap
// ErrBadOffer and never quote the offer, which carries the device's ICE password.
func parseOffer(s string) (*offer, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(s); err != nil {
		return nil, fmt.Errorf("%w: not SDP", ErrBadOffer)
	}
	if len(sd.MediaDescriptions) != 1 || sd.MediaDescriptions[0].MediaName.Media != "audio" {
		return nil, fmt.Errorf("%w: want exactly one audio section", ErrBadOffer)
	}
	md := sd.MediaDescriptions[0]
	// Attributes of the media section override those of the session.
	attr := func(key string) (string, bool) {
		if v, ok := md.Attribute(key); ok {
			return v, true
		}
		return sd.Attribute(key)
	}
	o := &offer{}
	var ok bool
	if o.ufrag, ok = attr("ice-ufrag"); !ok || !iceChars(o.ufrag, 4, 256) {
		return nil, fmt.Errorf("%w: bad ICE username fragment", ErrBadOffer)
	}
	if o.pwd, ok = attr("ice-pwd"); !ok || !iceChars(o.pwd, 22, 256) {
		return nil, fmt.Errorf("%w: bad ICE password", ErrBadOffer)
	}
	fp, ok := attr("fingerprint")
	if !ok {
		return nil, fmt.Errorf("%w: no DTLS fingerprint", ErrBadOffer)
	}
	alg, hexfp, _ := strings.Cut(fp, " ")
	if !strings.EqualFold(alg, "sha-256") {
		return nil, fmt.Errorf("%w: DTLS fingerprint is not SHA-256", ErrBadOffer)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexfp), ":", ""))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%w: bad DTLS fingerprint", ErrBadOffer)
	}
	o.fingerprint = b
	if setup, ok := attr("setup"); ok && setup != "actpass" && setup != "active" {
		return nil, fmt.Errorf("%w: DTLS role must let the relay be server", ErrBadOffer)
	}
	if o.mid, ok = md.Attribute("mid"); !ok || len(o.mid) > 32 || strings.ContainsAny(o.mid, " \r\n") {
		return nil, fmt.Errorf("%w: bad media ID", ErrBadOffer)
	}
	if !slicesContains(md.MediaName.Formats, strconv.Itoa(OpusPayloadType)) {
		return nil, fmt.Errorf("%w: Opus not offered", ErrBadOffer)
	}
	if rtpmap, ok := findRtpmap(md, OpusPayloadType); !ok || !strings.HasPrefix(strings.ToLower(rtpmap), "opus/48000") {
		return nil, fmt.Errorf("%w: Opus not offered", ErrBadOffer)
	}
	return o, nil
}

func findRtpmap(md *sdp.MediaDescription, pt int) (string, bool) {
	prefix := strconv.Itoa(pt) + " "
	for _, a := range md.Attributes {
		if a.Key == "rtpmap" && strings.HasPrefix(a.Value, prefix) {
			return a.Value[len(prefix):], true
		}
	}
	return "", false
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// iceChars reports whether s is an ICE credential (RFC 8839: ice-char is
// ALPHA / DIGIT / "+" / "/") of min to max characters.
func iceChars(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// answerSDP is the relay's answer: ICE-lite, DTLS server, one sendrecv Opus
// section sending one stream with SSRC ssrc, and a host candidate per address.
func answerSDP(o *offer, ufrag, pwd, fingerprint string, ssrc uint32, sessID uint64, addrs []netip.AddrPort) string {
	var b strings.Builder
	b.WriteString("v=0\r\n")
	fmt.Fprintf(&b, "o=- %d 1 IN IP4 0.0.0.0\r\n", sessID)
	b.WriteString("s=-\r\nt=0 0\r\n")
	b.WriteString("a=ice-lite\r\n")
	fmt.Fprintf(&b, "a=group:BUNDLE %s\r\n", o.mid)
	b.WriteString("a=msid-semantic: WMS relay\r\n")
	port := 9
	if len(addrs) > 0 {
		port = int(addrs[0].Port())
	}
	fmt.Fprintf(&b, "m=audio %d UDP/TLS/RTP/SAVPF %d\r\n", port, OpusPayloadType)
	b.WriteString("c=IN IP4 0.0.0.0\r\n")
	fmt.Fprintf(&b, "a=mid:%s\r\n", o.mid)
	fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd)
	fmt.Fprintf(&b, "a=fingerprint:sha-256 %s\r\n", fingerprint)
	b.WriteString("a=setup:passive\r\n")
	b.WriteString("a=rtcp-mux\r\n")
	fmt.Fprintf(&b, "a=rtpmap:%d opus/48000/2\r\n", OpusPayloadType)
	fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", OpusPayloadType, OpusFmtp)
	b.WriteString("a=sendrecv\r\n")
	b.WriteString("a=msid:relay audio\r\n")
	fmt.Fprintf(&b, "a=ssrc:%d cname:relay\r\n", ssrc)
	fmt.Fprintf(&b, "a=ssrc:%d msid:relay audio\r\n", ssrc)
	for i, a := range addrs {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp %d %s %d typ host\r\n", i+1, 2130706431-i, a.Addr().Unmap(), a.Port())
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}
