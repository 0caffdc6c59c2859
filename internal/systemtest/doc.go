// Package systemtest runs the whole system as an operator deploys it: the mahfooz
// binary built from this tree, an authority made with its CLI, an exchange running
// as its own process (killed with SIGKILL in the durability test), and devices
// using package device. Its tests check what only the whole system can show: that
// acknowledged messages survive a crash of the exchange and reach each recipient's
// UI exactly once, and that nothing a user sent can be found in the exchange's
// files or logs.
package systemtest
