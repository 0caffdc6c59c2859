// Package linkem emulates poor network links in user space, so that devices
// and the exchange can be tested over "edge", "3g" and lossy mobile links on
// one machine without kernel netem.
//
// A UDPProxy or TCPProxy listens on a local address and forwards to an
// upstream address, passing every packet through an emulated link: one
// Profile for each direction (up is client to server, down is server to
// client). A link is modelled in three stages, in this order:
//
//  1. Random loss (UDP only): each datagram is dropped with probability
//     Profile.Loss, independently or in bursts (Profile.LossBurst, a
//     two-state Gilbert model). Dropped packets take no link capacity, as in
//     Linux netem.
//  2. A bottleneck of Profile.Rate bits per second, counting the IPv4 and UDP
//     or TCP headers the packet would carry on a real link, behind a FIFO
//     queue of Profile.Queue: a packet that would wait longer than that is
//     tail-dropped (UDP) or holds the sender back (TCP, which in reality
//     would slow down under congestion control).
//  3. A propagation delay of Profile.Delay plus a uniform random jitter in
//     [-Profile.Jitter, +Profile.Jitter], as netem draws it when given no
//     distribution table. UDP packets may overtake each other, as they do on
//     real links, unless Profile.InOrder is set; a TCP byte stream is never
//     reordered.
//
// Each client is on a link of its own by default: every UDP source address
// and every TCP connection gets its own queue and loss process, like several
// phones each on their own radio link. WithSharedLink makes all clients of a
// proxy share one link instead.
//
// Delivery times are kept by one scheduler goroutine per proxy with a timer
// heap, so timing is as accurate as the Go runtime's timers (about 1 ms)
// and errors do not accumulate from packet to packet. The proxies run on the
// real monotonic clock: they emulate a network for real sockets.
// Randomness comes from a seeded generator (WithSeed), so a test that sends
// the same packets in the same order sees the same losses.
package linkem
