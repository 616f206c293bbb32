package commands

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/approvals"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/web"
)

// Store is what the command service needs from storage.
type Store interface {
	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	GetDevices(ctx context.Context, ids []string) ([]mdmd.Device, error)
	EnqueueCommand(ctx context.Context, c *mdmd.Command) error
	EnqueueCommands(ctx context.Context, cmds []*mdmd.Command) error
	GetGroup(ctx context.Context, id string) (*mdmd.Group, error)
	ListDevices(ctx context.Context, f mdmd.DeviceFilter) ([]mdmd.Device, string, error)
	GetAppleEnrollment(ctx context.Context, deviceID string) (*mdmd.AppleEnrollment, error)
	EndAppleEnrollment(ctx context.Context, deviceID string, state mdmd.EnrollmentState) error
}

// JobQueue queues durable background work (the push that wakes a device).
type JobQueue interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// PushJob is the job kind that wakes Apple devices; its payload is
// PushPayload.
const PushJob = "apple.push"

// PushPayload lists the devices a push job wakes.
type PushPayload struct {
	DeviceIDs []string `json:"device_ids"`
}

// AndroidCommander sends the common actions to Android devices.
type AndroidCommander interface {
	Lock(ctx context.Context, deviceID, by string) (*mdmd.Command, error)
	ResetPassword(ctx context.Context, deviceID, by, newPassword string, flags []string) (*mdmd.Command, error)
	Wipe(ctx context.Context, deviceID, by string, full bool, reason string, preserveFRP bool) (*mdmd.Command, error)
}

// Service queues commands and wakes devices.
type Service struct {
	st   Store
	jobs JobQueue
	box  *secret.Box
	// Android, when set, takes the actions for Android devices.
	Android AndroidCommander
	// Approvals, when set, takes the requests for destructive actions that
	// need a second admin's approval (a full wipe, a group wipe); without
	// it those actions are refused.
	Approvals Approver
}

// Approver records requests for actions that a second admin must approve
// (approvals.Service).
type Approver interface {
	Request(ctx context.Context, by *mdmd.Principal, kind, targetType, targetID, reason string, params any) (*mdmd.Approval, error)
}

// androidOwnership is the optional store method that tells a personally
// owned Android device (no full wipe) from a company-owned one.
type androidOwnership interface {
	GetAndroidDevice(ctx context.Context, deviceID string) (*mdmd.AndroidDevice, error)
}

// WipeDeviceFull fully wipes (factory-resets) a device on either platform:
// approvals.Executor, called once a second admin approved the wipe.
func (s *Service) WipeDeviceFull(ctx context.Context, deviceID, by, reason string, p approvals.WipeParams) (any, error) {
	var out []*mdmd.Command
	and, err := s.android(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if and != nil {
		cmd, err := and.Wipe(ctx, deviceID, by, true, reason, p.PreserveFRP == nil || *p.PreserveFRP)
		if err != nil {
			return nil, err
		}
		out = []*mdmd.Command{cmd}
	} else if out, err = s.EnqueueApple(ctx, deviceID, by, p.Push == nil || *p.Push, EraseDevice{PIN: p.PIN}); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(out))
	for _, c := range out {
		ids = append(ids, c.ID)
	}
	return map[string]any{"mode": "full", "command_ids": ids}, nil
}

// GroupWipeResult is what a group wipe reached.
type GroupWipeResult struct {
	Mode string `json:"mode"`
	// Devices is how many devices a wipe command was queued for.
	Devices         int      `json:"devices"`
	IOSDevices      int      `json:"ios_devices"`
	AndroidCommands []string `json:"android_command_ids"`
	// Failures are the devices that could not be wiped (a personally owned
	// Android device cannot be fully wiped, for one).
	Failures []GroupWipeFailure `json:"failures,omitempty"`
}

// GroupWipeFailure is one device a group wipe did not reach.
type GroupWipeFailure struct {
	DeviceID string `json:"device_id"`
	Error    string `json:"error"`
}

// WipeGroup wipes every enrolled device of a group, selectively or fully:
// approvals.Executor, called once a second admin approved the wipe. iOS
// devices are reached in batches; each Android device gets its own
// command, and one that cannot be wiped so is listed as a failure.
func (s *Service) WipeGroup(ctx context.Context, groupID, by, reason string, p approvals.WipeParams) (any, error) {
	if p.Mode != "selective" && p.Mode != "full" {
		return nil, mdmd.FieldError("mode", "must be selective or full, got %q", p.Mode)
	}
	full := p.Mode == "full"
	var apple AppleCommand = RemoveProfile{Identifier: mdmd.AppleEnrollmentProfileID}
	if full {
		apple = EraseDevice{PIN: p.PIN}
	}
	res := &GroupWipeResult{Mode: p.Mode, AndroidCommands: []string{}}
	n, err := s.EnqueueAppleToGroup(ctx, groupID, by, p.Push == nil || *p.Push, apple)
	res.IOSDevices, res.Devices = n, n
	if err != nil {
		return res, err
	}
	f := mdmd.DeviceFilter{GroupID: groupID, Platform: mdmd.PlatformAndroid, EnrollmentState: mdmd.EnrollmentEnrolled, Limit: mdmd.MaxPageSize}
	for {
		devs, next, err := s.st.ListDevices(ctx, f)
		if err != nil {
			return res, err
		}
		for _, d := range devs {
			if s.Android == nil {
				res.Failures = append(res.Failures, GroupWipeFailure{DeviceID: d.ID, Error: "Android Enterprise is not configured"})
				continue
			}
			cmd, err := s.Android.Wipe(ctx, d.ID, by, full, reason, p.PreserveFRP == nil || *p.PreserveFRP)
			if err != nil {
				res.Failures = append(res.Failures, GroupWipeFailure{DeviceID: d.ID, Error: mdmd.ErrorMessage(err)})
				continue
			}
			res.AndroidCommands = append(res.AndroidCommands, cmd.ID)
			res.Devices++
		}
		if next == "" {
			return res, nil
		}
		f.After = next
	}
}

// requestApproval asks for a second admin's approval of a destructive action.
func (s *Service) requestApproval(r *http.Request, kind, targetType, targetID, reason string, p approvals.WipeParams) (*mdmd.Approval, error) {
	if s.Approvals == nil {
		return nil, mdmd.Errorf(mdmd.EConflict, "this action needs a second admin's approval, and approvals are not configured")
	}
	return s.Approvals.Request(r.Context(), web.PrincipalFrom(r.Context()), kind, targetType, targetID, reason, p)
}

// android returns the Android commander for an Android device, or nil.
func (s *Service) android(ctx context.Context, deviceID string) (AndroidCommander, error) {
	d, err := s.st.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if d.Platform != mdmd.PlatformAndroid {
		return nil, nil
	}
	if s.Android == nil {
		return nil, mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured")
	}
	return s.Android, nil
}

// Lock locks a device on either platform; lock gives the message, phone
// number and PIN shown on an iPhone (Android locks with its own screen).
func (s *Service) Lock(ctx context.Context, deviceID, by string, push bool, lock DeviceLock) ([]*mdmd.Command, error) {
	and, err := s.android(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if and != nil {
		cmd, err := and.Lock(ctx, deviceID, by)
		if err != nil {
			return nil, err
		}
		return []*mdmd.Command{cmd}, nil
	}
	return s.EnqueueApple(ctx, deviceID, by, push, lock)
}

// SelectiveWipe removes corporate data only. On an iPhone, removing the
// enrollment profile removes every managed profile, managed app and its
// data; personal data stays. On Android the work profile is deleted
// (a fully managed device has no selective wipe and is refused).
func (s *Service) SelectiveWipe(ctx context.Context, deviceID, by, reason string, push bool) ([]*mdmd.Command, error) {
	and, err := s.android(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if and != nil {
		cmd, err := and.Wipe(ctx, deviceID, by, false, reason, true)
		if err != nil {
			return nil, err
		}
		return []*mdmd.Command{cmd}, nil
	}
	return s.EnqueueApple(ctx, deviceID, by, push, RemoveProfile{Identifier: mdmd.AppleEnrollmentProfileID})
}

// NewService returns the command service.
func NewService(st Store, jobs JobQueue, box *secret.Box) *Service {
	return &Service{st: st, jobs: jobs, box: box}
}

// EnqueueApple queues Apple commands for an enrolled iOS device and, unless
// push is false, queues the push that wakes it. The commands are queued
// in order.
func (s *Service) EnqueueApple(ctx context.Context, deviceID, by string, push bool, cmds ...AppleCommand) ([]*mdmd.Command, error) {
	d, err := s.st.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if d.Platform != mdmd.PlatformIOS {
		return nil, mdmd.Errorf(mdmd.EConflict, "device %s is %s: Apple commands go to iOS devices only", d.ID, d.Platform)
	}
	if d.EnrollmentState != mdmd.EnrollmentEnrolled {
		return nil, mdmd.Errorf(mdmd.EConflict, "device is %s, not enrolled: it cannot receive commands", d.EnrollmentState)
	}
	var out []*mdmd.Command
	for _, c := range cmds {
		if cp, ok := c.(ClearPasscode); ok && len(cp.UnlockToken) == 0 {
			tok, err := s.unlockToken(ctx, deviceID)
			if err != nil {
				return nil, err
			}
			cp.UnlockToken = tok
			c = cp
		}
		id := NewCommandID()
		payload, err := EncodeApple(id, c)
		if err != nil {
			return nil, err
		}
		if sensitive(c) {
			// An unlock token, or a profile that may hold passwords, is
			// sealed at rest and opened only to deliver it.
			if payload, err = s.box.Seal(payload, PayloadLabel(id)); err != nil {
				return nil, err
			}
		}
		cmd := &mdmd.Command{ID: id, DeviceID: deviceID, RequestType: c.RequestType(), Payload: payload, CreatedBy: by,
			Priority: priority(c)}
		if err := s.st.EnqueueCommand(ctx, cmd); err != nil {
			return nil, err
		}
		out = append(out, cmd)
	}
	if push {
		if err := s.Push(ctx, deviceID); err != nil {
			return out, err
		}
	}
	return out, nil
}

// EnqueueAppleToGroup queues commands for every enrolled iOS device of a
// group, a thousand devices per transaction, each batch with one push job.
// It returns how many devices it reached.
func (s *Service) EnqueueAppleToGroup(ctx context.Context, groupID, by string, push bool, cmds ...AppleCommand) (int, error) {
	if _, err := s.st.GetGroup(ctx, groupID); err != nil {
		return 0, err
	}
	for _, c := range cmds {
		if _, ok := c.(ClearPasscode); ok {
			return 0, mdmd.Errorf(mdmd.EInvalid, "ClearPasscode needs each device's unlock token; send it per device")
		}
	}
	f := mdmd.DeviceFilter{GroupID: groupID, Platform: mdmd.PlatformIOS, EnrollmentState: mdmd.EnrollmentEnrolled, Limit: mdmd.MaxPageSize}
	total := 0
	for {
		devs, next, err := s.st.ListDevices(ctx, f)
		if err != nil {
			return total, err
		}
		ids := make([]string, 0, len(devs))
		for _, d := range devs {
			ids = append(ids, d.ID)
		}
		batch, err := appleBatch(ids, by, cmds...)
		if err != nil {
			return total, err
		}
		if len(batch) > 0 {
			if err := s.st.EnqueueCommands(ctx, batch); err != nil {
				return total, err
			}
			total += len(devs)
			if push {
				if err := s.Push(ctx, ids...); err != nil {
					return total, err
				}
			}
		}
		if next == "" {
			return total, nil
		}
		f.After = next
	}
}

// Push queues a push to the devices.
func (s *Service) Push(ctx context.Context, deviceIDs ...string) error {
	payload, _ := json.Marshal(PushPayload{DeviceIDs: deviceIDs})
	_, err := s.jobs.Enqueue(ctx, &mdmd.Job{Kind: PushJob, Payload: payload, MaxAttempts: 5})
	return err
}

// PayloadLabel binds a sealed command payload to its command.
func PayloadLabel(commandID string) string { return "command:" + commandID }

// sensitive reports whether a command's payload carries secrets.
func sensitive(c AppleCommand) bool {
	switch c.(type) {
	case ClearPasscode, InstallProfile:
		return true
	}
	return false
}

// priority puts protective commands ahead of inventory queries.
func priority(c AppleCommand) int {
	switch c.(type) {
	case EraseDevice, DeviceLock:
		return 90
	case RemoveProfile, ClearPasscode:
		return 50
	}
	return 0
}

func (s *Service) unlockToken(ctx context.Context, deviceID string) ([]byte, error) {
	e, err := s.st.GetAppleEnrollment(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if len(e.UnlockTokenSealed) == 0 {
		return nil, mdmd.Errorf(mdmd.EConflict, "the device gave no unlock token, so its passcode cannot be cleared")
	}
	return s.box.Open(e.UnlockTokenSealed, "unlock:"+deviceID)
}

// QueryKinds maps the API's query names to commands.
var QueryKinds = map[string]AppleCommand{
	"device_information":     DeviceInformation{},
	"security_info":          SecurityInfo{},
	"profile_list":           ProfileList{},
	"installed_applications": InstalledApplicationList{},
	"certificate_list":       CertificateList{},
}

type queryInput struct {
	Queries []string `json:"queries"`
	Push    *bool    `json:"push"`
}

// decodeQueries reads a query action: the named queries (by default device
// information, security info and the profile list) as commands.
func decodeQueries(r *http.Request) (*queryInput, []AppleCommand, error) {
	var in queryInput
	if err := web.DecodeJSON(r, &in); err != nil {
		return nil, nil, err
	}
	if len(in.Queries) == 0 {
		in.Queries = []string{"device_information", "security_info", "profile_list"}
	}
	cmds := make([]AppleCommand, 0, len(in.Queries))
	for _, q := range in.Queries {
		c, ok := QueryKinds[q]
		if !ok {
			return nil, nil, mdmd.FieldError("queries", "unknown query %q", q)
		}
		cmds = append(cmds, c)
	}
	return &in, cmds, nil
}

// RegisterAPI adds the device action routes.
func (s *Service) RegisterAPI(reg web.Registrar) {
	respond := func(w http.ResponseWriter, cmds []*mdmd.Command) {
		if cmds == nil {
			cmds = []*mdmd.Command{}
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"commands": cmds})
	}
	by := func(r *http.Request) string { return web.PrincipalFrom(r.Context()).Name }
	pushOf := func(p *bool) bool { return p == nil || *p }

	reg.HandleJSON("POST", "/devices/{id}/actions/query", mdmd.PermCommandsQuery, func(w http.ResponseWriter, r *http.Request) error {
		in, cmds, err := decodeQueries(r)
		if err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		out, err := s.EnqueueApple(r.Context(), id, by(r), pushOf(in.Push), cmds...)
		if err != nil {
			return err
		}
		reg.Audit(r, "device.query", "device", id, mdmd.OutcomeSuccess, "", map[string]any{"queries": in.Queries})
		respond(w, out)
		return nil
	})
	reg.HandleJSON("POST", "/groups/{id}/actions/query", mdmd.PermCommandsQuery, func(w http.ResponseWriter, r *http.Request) error {
		in, cmds, err := decodeQueries(r)
		if err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		n, err := s.EnqueueAppleToGroup(r.Context(), id, by(r), pushOf(in.Push), cmds...)
		if err != nil {
			return err
		}
		reg.Audit(r, "group.query", "group", id, mdmd.OutcomeSuccess, "", map[string]any{"queries": in.Queries, "devices": n})
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"devices": n, "commands": n * len(cmds)})
		return nil
	})
	reg.HandleJSON("POST", "/groups/{id}/actions/lock", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Message     string `json:"message"`
			PhoneNumber string `json:"phone_number"`
			Push        *bool  `json:"push"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		n, err := s.EnqueueAppleToGroup(r.Context(), id, by(r), pushOf(in.Push), DeviceLock{Message: in.Message, PhoneNumber: in.PhoneNumber})
		if err != nil {
			return err
		}
		reg.Audit(r, "group.lock", "group", id, mdmd.OutcomeSuccess, "", map[string]any{"devices": n, "message": in.Message})
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"devices": n, "commands": n})
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/lock", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Message     string `json:"message"`
			PhoneNumber string `json:"phone_number"`
			PIN         string `json:"pin"`
			Push        *bool  `json:"push"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		out, err := s.Lock(r.Context(), id, by(r), pushOf(in.Push), DeviceLock{Message: in.Message, PhoneNumber: in.PhoneNumber, PIN: in.PIN})
		if err != nil {
			return err
		}
		reg.Audit(r, "device.lock", "device", id, mdmd.OutcomeSuccess, "", map[string]any{"message": in.Message})
		respond(w, out)
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/clear-passcode", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Push *bool `json:"push"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		var out []*mdmd.Command
		if and, err := s.android(r.Context(), id); err != nil {
			return err
		} else if and != nil {
			cmd, err := and.ResetPassword(r.Context(), id, by(r), "", nil)
			if err != nil {
				return err
			}
			out = []*mdmd.Command{cmd}
		} else if out, err = s.EnqueueApple(r.Context(), id, by(r), pushOf(in.Push), ClearPasscode{}); err != nil {
			return err
		}
		reg.Audit(r, "device.clear_passcode", "device", id, mdmd.OutcomeSuccess, "", nil)
		respond(w, out)
		return nil
	})
	// Retire ends management on the server's side for a device that is gone
	// (lost, reset without checking out): its identity stops working and
	// it may enroll again, with any link.
	reg.HandleJSON("POST", "/devices/{id}/actions/retire", mdmd.PermDevicesDelete, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Reason string `json:"reason"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		if strings.TrimSpace(in.Reason) == "" || len(in.Reason) > 500 {
			return mdmd.FieldError("reason", "required, at most 500 characters")
		}
		id := chi.URLParam(r, "id")
		d, err := s.st.GetDevice(r.Context(), id)
		if err != nil {
			return err
		}
		if d.Platform != mdmd.PlatformIOS {
			return mdmd.Errorf(mdmd.EConflict, "retire applies to iOS devices; Android devices are deleted through AMAPI")
		}
		if err := s.st.EndAppleEnrollment(r.Context(), id, mdmd.EnrollmentUnenrolled); err != nil {
			return err
		}
		reg.Audit(r, "device.retire", "device", id, mdmd.OutcomeSuccess, in.Reason, nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/wipe", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		in, err := decodeWipe(r)
		if err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		d, err := s.st.GetDevice(r.Context(), id)
		if err != nil {
			return err
		}
		if in.Confirm == "" || (in.Confirm != d.Name && in.Confirm != d.SerialNumber) {
			return mdmd.FieldError("confirm", "type the device's name or serial number to confirm the wipe")
		}
		params := in.params()
		if in.Mode == "full" {
			// A full wipe is only requested here: a second admin approves
			// it (POST /approvals/{id}/approve) before anything is sent.
			if d.Platform == mdmd.PlatformAndroid {
				if err := s.checkAndroidFullWipe(r.Context(), d); err != nil {
					return err
				}
			} else if d.EnrollmentState != mdmd.EnrollmentEnrolled {
				return mdmd.Errorf(mdmd.EConflict, "device is %s, not enrolled: it cannot receive commands", d.EnrollmentState)
			}
			a, err := s.requestApproval(r, mdmd.ApprovalDeviceWipeFull, "device", id, in.Reason, params)
			if err != nil {
				return err
			}
			web.WriteJSON(w, http.StatusAccepted, map[string]any{"approval": a})
			return nil
		}
		out, err := s.SelectiveWipe(r.Context(), id, by(r), in.Reason, pushOf(in.Push))
		if err != nil {
			return err
		}
		platform := map[mdmd.Platform]string{mdmd.PlatformAndroid: "android"}[d.Platform]
		details := map[string]any{"mode": in.Mode}
		if platform != "" {
			details["platform"] = platform
		}
		reg.Audit(r, "device.wipe", "device", id, mdmd.OutcomeSuccess, in.Reason, details)
		respond(w, out)
		return nil
	})
	// A wipe of a group's devices, selective or full, always needs a
	// second admin's approval.
	reg.HandleJSON("POST", "/groups/{id}/actions/wipe", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		in, err := decodeWipe(r)
		if err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		g, err := s.st.GetGroup(r.Context(), id)
		if err != nil {
			return err
		}
		if in.Confirm == "" || in.Confirm != g.Name {
			return mdmd.FieldError("confirm", "type the group's name to confirm the wipe")
		}
		a, err := s.requestApproval(r, mdmd.ApprovalGroupWipe, "group", id, in.Reason, in.params())
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"approval": a})
		return nil
	})
}

// wipeInput is the body of a device or group wipe.
type wipeInput struct {
	Mode    string `json:"mode"`
	Reason  string `json:"reason"`
	Confirm string `json:"confirm"`
	PIN     string `json:"pin"`
	Push    *bool  `json:"push"`
	// PreserveFRP keeps factory reset protection on a fully wiped
	// Android device (default true).
	PreserveFRP *bool `json:"preserve_frp"`
}

// decodeWipe reads a wipe body and checks what every wipe needs: a mode
// and a reason.
func decodeWipe(r *http.Request) (*wipeInput, error) {
	var in wipeInput
	if err := web.DecodeJSON(r, &in); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Reason) == "" || len(in.Reason) > 500 {
		return nil, mdmd.FieldError("reason", "required, at most 500 characters")
	}
	if in.Mode != "selective" && in.Mode != "full" {
		return nil, mdmd.FieldError("mode", "must be selective or full, got %q", in.Mode)
	}
	return &in, nil
}

func (in *wipeInput) params() approvals.WipeParams {
	return approvals.WipeParams{Mode: in.Mode, PIN: in.PIN, Push: in.Push, PreserveFRP: in.PreserveFRP}
}

// checkAndroidFullWipe refuses, at request time, the full wipe of an
// Android device that can only be wiped selectively (personally owned):
// the Android commander enforces it again when the wipe is sent.
func (s *Service) checkAndroidFullWipe(ctx context.Context, d *mdmd.Device) error {
	if s.Android == nil {
		return mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured")
	}
	if st, ok := s.st.(androidOwnership); ok {
		ad, err := st.GetAndroidDevice(ctx, d.ID)
		if err != nil {
			return err
		}
		if ad.AMAPIOwnership != "COMPANY_OWNED" {
			return mdmd.Errorf(mdmd.EConflict, "a personally owned device can only be wiped selectively (its work profile)")
		}
	}
	return nil
}
