package client

import (
	"context"

	"mahfooz/wire"
)

// JoinCall hands the SDP offer of the device's media link to the exchange's call
// relay and returns the relay's answer. The first join of a call creates it with
// members (which must include this device) as its allow-list; later joins must
// come from a device on that list, and their members are ignored. A refusal is a
// *wire.Error: forbidden (not on the list), quota_exceeded (too many calls),
// invalid_request (unusable offer or members), unavailable (no relay).
func (c *Client) JoinCall(ctx context.Context, call wire.CallID, members []wire.DeviceID, offer string) (string, error) {
	m := wire.SortDeviceIDs(append([]wire.DeviceID(nil), members...))
	r, err := expect[*wire.CallJoined](c.request(ctx, &wire.JoinCall{CallID: call, Members: m, Offer: offer}))
	if err != nil {
		return "", err
	}
	return r.Answer, nil
}

// CallJoiner returns a function that joins call with members through JoinCall,
// in the form rtc.Dial takes.
func (c *Client) CallJoiner(call wire.CallID, members []wire.DeviceID) func(ctx context.Context, offer string) (string, error) {
	return func(ctx context.Context, offer string) (string, error) {
		return c.JoinCall(ctx, call, members, offer)
	}
}

// SetCallMembers replaces the allow-list of a call this device takes part in; the
// list must include this device. Participants not on it lose the call's media at
// once.
func (c *Client) SetCallMembers(ctx context.Context, call wire.CallID, members []wire.DeviceID) error {
	m := wire.SortDeviceIDs(append([]wire.DeviceID(nil), members...))
	_, err := expect[*wire.OK](c.request(ctx, &wire.SetCallMembers{CallID: call, Members: m}))
	return err
}

// LeaveCall takes this device out of a call's media. Leaving a call the device is
// not in succeeds.
func (c *Client) LeaveCall(ctx context.Context, call wire.CallID) error {
	_, err := expect[*wire.OK](c.request(ctx, &wire.LeaveCall{CallID: call}))
	return err
}
