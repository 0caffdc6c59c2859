// Package jitter is the receive side of call audio for one sender: a jitter
// buffer that takes the sender's Opus packets as they arrive from the network,
// in any order and with gaps, and plays them out as a steady stream of 20 ms
// frames, recovering lost packets from the in-band FEC of their successors
// and concealing the rest. A device keeps one Buffer per sender of a call and
// adds their frames together with Mix.
//
// # Timing
//
// Packets carry the RTP timestamp of their first sample (48 kHz clock, set by
// the sender). For every packet the Buffer measures its transit: arrival time
// (from Config.Now) minus the timestamp of the packet's end, when the sender
// could send it, so that the transit is the network's alone whatever the
// packet's duration. The smallest transit of the last transitWindow packets is
// the base: the delay of the fastest path, clock offset included. The target
// delay is how much later than the base the Buffer plays, so that every packet
// of the window would have been in by then:
//
//	target = clamp(MinDelay, max(transit - base) + packet + 20 ms [+ packet], MaxDelay)
//
// The maximum rather than a percentile: on a poor link the slow tail is what
// would otherwise be played as concealment, and playing a little later costs
// less than losing words. A packet's first sample plays only once the whole
// packet is in, hence its duration (that of the sender's latest packet, so a
// change of profile moves the target at once); the 20 ms is one playout tick.
// The extra packet is added while packets carry FEC and some were lost in the
// last 10 s, or while they carry copies of the packet before: either can only
// rebuild a lost packet once its successor is in.
//
// At each Next the sample that should be playing is want = now - base - target
// (in timestamp units), and the Buffer steers its playout position towards it:
//
//   - At the start of a talkspurt (after silence, DTX or before the first
//     packet) it starts the first packet when want reaches it, so each
//     talkspurt starts at the target delay.
//   - When the playout is more than 10 ms ahead of want (the delay is below
//     target) and the packet due next is missing, or the last frame played
//     was quiet, it expands: it plays 20 ms of concealment without moving on,
//     which adds 20 ms of delay (and gives a missing packet time to arrive).
//   - When the playout is 40 ms or more behind want (the delay is above
//     target), it drops a frame that is quiet (a pause between words), or any
//     frame once 120 ms behind. Over MaxDelay behind (the caller stopped
//     calling Next for a while, say) it discards what is too old and starts
//     again at the next talkspurt.
//
// # Losses
//
// A packet still missing when it is due is lost if a later packet has arrived:
// it is rebuilt from that packet's in-band FEC when the encoder put some there
// (libopus does, in its speech modes, with FEC on), concealed otherwise. When
// no later packet has arrived, the sender may just have gone quiet (with DTX
// it sends nothing in silence), so the Buffer conceals at most 120 ms and then
// plays silence until the next talkspurt. A packet the sender marks as the first
// after its silence (PushResumed) says that what is missing before it was not
// lost: it is concealed into silence the same way, and not counted or repaired. A packet that arrives after its
// audio was played (or skipped) is late and dropped.
//
// A Buffer is safe for concurrent use: typically Push runs on the network
// goroutine and Next on the audio clock's.
package jitter
