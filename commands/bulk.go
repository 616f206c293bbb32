package commands

import (
	"context"
	"strings"

	"github.com/google/uuid"

	"github.com/mdmd/mdmd"
)

// SendBulk sends a bulk action to a batch of its devices and says what
// each got. iOS devices are reached with one insert for the whole batch
// and one push; each Android device gets its own AMAPI command. A device
// that is gone, not enrolled, or cannot take the action (a full wipe of a
// personally owned Android device) is failed with the reason, and a
// posture query to an Android device is skipped: Android devices report
// through Android Enterprise by themselves. On an error it returns, with
// the error, what it had sent before it, so that is not sent again.
func (s *Service) SendBulk(ctx context.Context, b *mdmd.BulkAction, by string, deviceIDs []string) ([]mdmd.BulkResult, error) {
	devs, err := s.st.GetDevices(ctx, deviceIDs)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*mdmd.Device, len(devs))
	for i := range devs {
		byID[devs[i].ID] = &devs[i]
	}
	apple, err := bulkAppleCommands(b)
	if err != nil {
		return nil, err
	}
	out := make([]mdmd.BulkResult, 0, len(deviceIDs))
	var ios []string
	for _, id := range deviceIDs {
		d := byID[id]
		switch {
		case d == nil:
			out = append(out, mdmd.BulkResult{DeviceID: id, State: mdmd.TargetFailed, Error: "the device was deleted"})
		case d.EnrollmentState != mdmd.EnrollmentEnrolled:
			out = append(out, mdmd.BulkResult{DeviceID: id, State: mdmd.TargetFailed,
				Error: "the device is " + string(d.EnrollmentState) + ", not enrolled"})
		case d.Platform == mdmd.PlatformIOS:
			ios = append(ios, id)
		default:
			out = append(out, s.sendAndroid(ctx, b, by, id))
		}
	}
	if len(ios) == 0 {
		return out, nil
	}
	batch, err := appleBatch(ios, by, apple...)
	if err != nil {
		return out, err
	}
	if err := s.st.EnqueueCommands(ctx, batch); err != nil {
		return out, err
	}
	// A device's last command tells when it handled the whole action.
	last := map[string]string{}
	for _, c := range batch {
		last[c.DeviceID] = c.ID
	}
	for _, id := range ios {
		out = append(out, mdmd.BulkResult{DeviceID: id, State: mdmd.TargetSent, CommandID: last[id]})
	}
	if b.Params.Push == nil || *b.Params.Push {
		// Queued, the commands reach the devices at their next check-in
		// even if the push could not be queued.
		return out, s.Push(ctx, ios...)
	}
	return out, nil
}

// bulkAppleCommands are the Apple commands a bulk action sends each iOS device.
func bulkAppleCommands(b *mdmd.BulkAction) ([]AppleCommand, error) {
	switch b.Action {
	case mdmd.BulkQuery:
		return []AppleCommand{DeviceInformation{}, SecurityInfo{}, ProfileList{}}, nil
	case mdmd.BulkLock:
		return []AppleCommand{DeviceLock{Message: b.Params.Message, PhoneNumber: b.Params.PhoneNumber}}, nil
	case mdmd.BulkWipeSelective:
		return []AppleCommand{RemoveProfile{Identifier: mdmd.AppleEnrollmentProfileID}}, nil
	case mdmd.BulkWipeFull:
		return []AppleCommand{EraseDevice{}}, nil
	}
	return nil, mdmd.FieldError("action", "unknown bulk action %q", b.Action)
}

func (s *Service) sendAndroid(ctx context.Context, b *mdmd.BulkAction, by, id string) mdmd.BulkResult {
	if b.Action == mdmd.BulkQuery {
		return mdmd.BulkResult{DeviceID: id, State: mdmd.TargetSkipped,
			Error: "Android devices report their posture through Android Enterprise"}
	}
	if s.Android == nil {
		return mdmd.BulkResult{DeviceID: id, State: mdmd.TargetFailed, Error: "Android Enterprise is not configured"}
	}
	var cmd *mdmd.Command
	var err error
	switch b.Action {
	case mdmd.BulkLock:
		cmd, err = s.Android.Lock(ctx, id, by)
	case mdmd.BulkWipeSelective, mdmd.BulkWipeFull:
		cmd, err = s.Android.Wipe(ctx, id, by, b.Action == mdmd.BulkWipeFull, b.Reason,
			b.Params.PreserveFRP == nil || *b.Params.PreserveFRP)
	}
	if err != nil {
		if mdmd.ErrorCode(err) == mdmd.EInternal || mdmd.ErrorCode(err) == mdmd.EUnavailable {
			// Not the device's fault: leave it to the next attempt.
			return mdmd.BulkResult{DeviceID: id, State: mdmd.TargetPending, Error: mdmd.ErrorMessage(err)}
		}
		return mdmd.BulkResult{DeviceID: id, State: mdmd.TargetFailed, Error: mdmd.ErrorMessage(err)}
	}
	return mdmd.BulkResult{DeviceID: id, State: mdmd.TargetSent, CommandID: cmd.ID}
}

// appleBatch builds the commands for a batch of iOS devices, in order for
// each device.
func appleBatch(deviceIDs []string, by string, cmds ...AppleCommand) ([]*mdmd.Command, error) {
	batch := make([]*mdmd.Command, 0, len(deviceIDs)*len(cmds))
	for _, d := range deviceIDs {
		for _, c := range cmds {
			id := NewCommandID()
			payload, err := EncodeApple(id, c)
			if err != nil {
				return nil, err
			}
			batch = append(batch, &mdmd.Command{ID: id, DeviceID: d, RequestType: c.RequestType(), Payload: payload,
				CreatedBy: by, Priority: priority(c)})
		}
	}
	return batch, nil
}

// NewCommandID returns a command UUID that sorts after every one made
// before it (UUIDv7, monotonic within the process): commands queued
// together with the same time are delivered in the order they were made.
func NewCommandID() string { return strings.ToUpper(uuid.Must(uuid.NewV7()).String()) }
