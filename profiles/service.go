package profiles

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/pki"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/web"
)

// Store is what profile management needs from storage.
type Store interface {
	CreateProfile(ctx context.Context, p *mdmd.Profile) error
	GetProfile(ctx context.Context, id string) (*mdmd.Profile, error)
	ListProfiles(ctx context.Context) ([]mdmd.Profile, error)
	UpdateProfile(ctx context.Context, p *mdmd.Profile) error
	DeleteProfile(ctx context.Context, id string) error
	AssignProfile(ctx context.Context, a *mdmd.ProfileAssignment) error
	UnassignProfile(ctx context.Context, a *mdmd.ProfileAssignment) error
	ListAssignments(ctx context.Context, profileID string) ([]mdmd.ProfileAssignment, error)
	DesiredProfiles(ctx context.Context, deviceID string) ([]mdmd.Profile, error)
	DevicesForProfile(ctx context.Context, profileID string) ([]string, error)
	DeviceProfiles(ctx context.Context, deviceID string) ([]mdmd.DeviceProfile, error)
	PutDeviceProfile(ctx context.Context, dp *mdmd.DeviceProfile) error
	DeviceProfileByCommand(ctx context.Context, commandID string) (*mdmd.DeviceProfile, error)
	DeleteDeviceProfile(ctx context.Context, deviceID, identifier string) error
	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	GetPosture(ctx context.Context, deviceID string) (*mdmd.Posture, error)
	GetCommand(ctx context.Context, id string) (*mdmd.Command, error)
	ListAllAssignments(ctx context.Context) ([]mdmd.ProfileAssignment, error)
	CountProfileInstalls(ctx context.Context) (map[string]map[string]int64, error)
	ProfileInstalls(ctx context.Context, profileID string, limit int) ([]mdmd.DeviceProfile, []mdmd.Device, error)
}

// Commander queues device commands.
type Commander interface {
	EnqueueApple(ctx context.Context, deviceID, by string, push bool, cmds ...commands.AppleCommand) ([]*mdmd.Command, error)
	Push(ctx context.Context, deviceIDs ...string) error
}

// JobQueue queues durable background work.
type JobQueue interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// ReconcileJob is the job kind that brings devices' profiles in line with
// their assignments; its payload is ReconcilePayload.
const ReconcileJob = "profiles.reconcile"

// ReconcilePayload lists the devices to reconcile.
type ReconcilePayload struct {
	DeviceIDs []string `json:"device_ids"`
}

// Service manages configuration profiles: it builds them, assigns them,
// installs them (signed) where they are assigned, removes them where they
// no longer are, and verifies with ProfileList.
type Service struct {
	st   Store
	cmds Commander
	jobs JobQueue
	ids  *pki.Identities
	box  *secret.Box
	org  string
	log  *slog.Logger
}

// NewService returns the profile service. Profile payloads (which may
// hold Wi-Fi passwords and VPN secrets) are sealed at rest with box.
func NewService(st Store, cmds Commander, jobs JobQueue, ids *pki.Identities, box *secret.Box, org string, log *slog.Logger) *Service {
	return &Service{st: st, cmds: cmds, jobs: jobs, ids: ids, box: box, org: org, log: log}
}

func payloadLabel(profileID string) string { return "profile:" + profileID }

// payload opens a stored profile's payload.
func (s *Service) payload(p *mdmd.Profile) ([]byte, error) {
	if !secret.IsSealed(p.Payload) {
		return p.Payload, nil
	}
	return s.box.Open(p.Payload, payloadLabel(p.ID))
}

// sealPayload seals a profile's payload for storage.
func (s *Service) sealPayload(p *mdmd.Profile) error {
	sealed, err := s.box.Seal(p.Payload, payloadLabel(p.ID))
	if err == nil {
		p.Payload = sealed
	}
	return err
}

// ScheduleReconcile queues reconciliation of the devices.
func (s *Service) ScheduleReconcile(ctx context.Context, deviceIDs []string) error {
	for lo := 0; lo < len(deviceIDs); lo += 500 {
		payload, _ := json.Marshal(ReconcilePayload{DeviceIDs: deviceIDs[lo:min(lo+500, len(deviceIDs))]})
		if _, err := s.jobs.Enqueue(ctx, &mdmd.Job{Kind: ReconcileJob, Payload: payload, MaxAttempts: 5}); err != nil {
			return err
		}
	}
	return nil
}

// RunJob is the handler of ReconcileJob.
func (s *Service) RunJob(ctx context.Context, j *mdmd.Job) error {
	var p ReconcilePayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return err
	}
	for _, id := range p.DeviceIDs {
		if _, err := s.Reconcile(ctx, id, false); err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
			return err
		}
	}
	return nil
}

// installedOnDevice returns the identifiers of the latest ProfileList
// answer, and whether there has been one.
func (s *Service) installedOnDevice(ctx context.Context, deviceID string) ([]string, bool) {
	p, err := s.st.GetPosture(ctx, deviceID)
	if err != nil || len(p.Details) == 0 {
		return nil, false
	}
	var d struct {
		Installed *[]string `json:"installed_profiles"`
	}
	if json.Unmarshal(p.Details, &d) != nil || d.Installed == nil {
		return nil, false
	}
	return *d.Installed, true
}

// Reconcile queues the installs and removals that bring a device in line
// with its assignments, then a ProfileList to verify, and wakes it. An
// installed profile that the last ProfileList did not show (drift) is
// installed again. With retryFailed, failed installs are tried again.
func (s *Service) Reconcile(ctx context.Context, deviceID string, retryFailed bool) ([]*mdmd.Command, error) {
	dev, err := s.st.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if dev.Platform != mdmd.PlatformIOS || dev.EnrollmentState != mdmd.EnrollmentEnrolled {
		return nil, nil
	}
	desired, err := s.st.DesiredProfiles(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	have, err := s.st.DeviceProfiles(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	byID := map[string]*mdmd.DeviceProfile{}
	onTheirWay := false
	for i := range have {
		h := &have[i]
		byID[h.Identifier] = h
		if h.State == mdmd.ProfileInstalling || h.State == mdmd.ProfileRemoving {
			s.settle(ctx, deviceID, h)
			onTheirWay = onTheirWay || h.State == mdmd.ProfileInstalling || h.State == mdmd.ProfileRemoving
		}
	}
	onDevice, known := s.installedOnDevice(ctx, deviceID)
	var out []*mdmd.Command
	queue := func(c commands.AppleCommand) (*mdmd.Command, error) {
		cmds, err := s.cmds.EnqueueApple(ctx, deviceID, "profiles", false, c)
		if err != nil {
			return nil, err
		}
		out = append(out, cmds[0])
		return cmds[0], nil
	}
	wanted := map[string]bool{}
	for _, p := range desired {
		wanted[p.Identifier] = true
		h := byID[p.Identifier]
		need := h == nil || h.Version != p.Version || h.State == mdmd.ProfileRemoving ||
			(h.State == mdmd.ProfileInstalled && known && !slices.Contains(onDevice, p.Identifier)) ||
			(h.State == mdmd.ProfileFailed && retryFailed)
		if !need {
			continue
		}
		xml, err := s.payload(&p)
		if err != nil {
			return out, err
		}
		signed, err := apple.Sign(xml, s.ids.ProfileSigner.Cert, s.ids.ProfileSigner.Key, s.ids.CA.Cert)
		if err != nil {
			return out, err
		}
		cmd, err := queue(commands.InstallProfile{Payload: signed})
		if err != nil {
			return out, err
		}
		pid := p.ID
		if err := s.st.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: deviceID, Identifier: p.Identifier, ProfileID: &pid,
			Version: p.Version, State: mdmd.ProfileInstalling, CommandID: cmd.ID}); err != nil {
			return out, err
		}
	}
	for _, h := range have {
		if wanted[h.Identifier] || h.State == mdmd.ProfileRemoving || h.State == "" {
			continue
		}
		cmd, err := queue(commands.RemoveProfile{Identifier: h.Identifier})
		if err != nil {
			return out, err
		}
		h.State, h.CommandID, h.Error = mdmd.ProfileRemoving, cmd.ID, ""
		if err := s.st.PutDeviceProfile(ctx, &h); err != nil {
			return out, err
		}
	}
	if len(out) == 0 {
		if onTheirWay {
			// Nothing new, but an install or removal is still queued (a
			// device may have deferred it with NotNow): wake the device
			// so that it is delivered.
			return nil, s.cmds.Push(ctx, deviceID)
		}
		return nil, nil
	}
	if _, err := queue(commands.ProfileList{}); err != nil {
		return out, err
	}
	return out, s.cmds.Push(ctx, deviceID)
}

// settle brings an installing or removing row up to date with its command
// when the command ended without the outcome being recorded (canceled by
// an admin, or a crash between the result and its bookkeeping). A row
// whose command was canceled or failed is left as failed or dropped, so
// that this reconciliation does the work again.
func (s *Service) settle(ctx context.Context, deviceID string, h *mdmd.DeviceProfile) {
	cmd, err := s.st.GetCommand(ctx, h.CommandID)
	if err == nil && !cmd.Status.Final() {
		return // still on its way
	}
	ok := err == nil && cmd.Status == mdmd.CommandAcknowledged
	switch {
	case h.State == mdmd.ProfileRemoving && ok:
		if err := s.st.DeleteDeviceProfile(ctx, deviceID, h.Identifier); err == nil {
			h.State = "" // gone: not desired, nothing to remove
		}
	case h.State == mdmd.ProfileRemoving:
		h.State = mdmd.ProfileInstalled // removal must be tried again
	case ok:
		h.State = mdmd.ProfileInstalled
	default:
		h.State, h.Version = mdmd.ProfileFailed, 0 // install must be tried again
	}
	if h.State != "" {
		if err := s.st.PutDeviceProfile(ctx, h); err != nil {
			s.log.Error("settling profile state failed", "device", deviceID, "err", err)
		}
	}
}

// Enrolled is called when a device finishes enrolling.
func (s *Service) Enrolled(ctx context.Context, deviceID string) {
	if err := s.ScheduleReconcile(ctx, []string{deviceID}); err != nil {
		s.log.Error("scheduling profile reconciliation failed", "device", deviceID, "err", err)
	}
}

// CommandFinished records the outcome of an install or removal.
func (s *Service) CommandFinished(ctx context.Context, deviceID string, cmd *mdmd.Command) {
	if cmd.RequestType != "InstallProfile" && cmd.RequestType != "RemoveProfile" {
		return
	}
	dp, err := s.st.DeviceProfileByCommand(ctx, cmd.ID)
	if err != nil || dp.DeviceID != deviceID {
		return // a command mdmd did not queue for a profile (a selective wipe)
	}
	ok := cmd.Status == mdmd.CommandAcknowledged
	switch {
	case cmd.RequestType == "RemoveProfile" && (ok || strings.Contains(cmd.Error, "not installed")):
		err = s.st.DeleteDeviceProfile(ctx, deviceID, dp.Identifier)
	case ok:
		dp.State, dp.Error = mdmd.ProfileInstalled, ""
		err = s.st.PutDeviceProfile(ctx, dp)
	default:
		dp.State, dp.Error = mdmd.ProfileFailed, cmd.Error
		err = s.st.PutDeviceProfile(ctx, dp)
	}
	if err != nil {
		s.log.Error("recording profile state failed", "device", deviceID, "err", err)
	}
}

// MembershipChanged reconciles devices that joined or left a group.
func (s *Service) MembershipChanged(ctx context.Context, groupID string, deviceIDs []string) {
	if err := s.ScheduleReconcile(ctx, deviceIDs); err != nil {
		s.log.Error("scheduling profile reconciliation failed", "group", groupID, "err", err)
	}
}

func (s *Service) profileChanged(ctx context.Context, profileID string, extra []string) error {
	ids, err := s.st.DevicesForProfile(ctx, profileID)
	if err != nil {
		return err
	}
	return s.ScheduleReconcile(ctx, append(ids, extra...))
}

// DeviceProfileView is one profile of a device, with drift.
type DeviceProfileView struct {
	mdmd.DeviceProfile
	Name           string `json:"name,omitempty"`
	CurrentVersion int    `json:"current_version,omitempty"`
	OnDevice       *bool  `json:"on_device,omitempty"`
	Drift          string `json:"drift,omitempty"`
}

// DeviceView lists what mdmd manages on a device and what drifted.
func (s *Service) DeviceView(ctx context.Context, deviceID string) ([]DeviceProfileView, []string, error) {
	if _, err := s.st.GetDevice(ctx, deviceID); err != nil {
		return nil, nil, err
	}
	have, err := s.st.DeviceProfiles(ctx, deviceID)
	if err != nil {
		return nil, nil, err
	}
	desired, err := s.st.DesiredProfiles(ctx, deviceID)
	if err != nil {
		return nil, nil, err
	}
	onDevice, known := s.installedOnDevice(ctx, deviceID)
	want := map[string]mdmd.Profile{}
	for _, p := range desired {
		want[p.Identifier] = p
	}
	out := []DeviceProfileView{}
	managed := map[string]bool{mdmd.AppleEnrollmentProfileID: true}
	for _, h := range have {
		v := DeviceProfileView{DeviceProfile: h}
		managed[h.Identifier] = true
		p, assigned := want[h.Identifier]
		if assigned {
			v.Name, v.CurrentVersion = p.Name, p.Version
		}
		if known {
			on := slices.Contains(onDevice, h.Identifier)
			v.OnDevice = &on
			if h.State == mdmd.ProfileInstalled && !on {
				v.Drift = "missing on the device"
			}
		}
		switch {
		case v.Drift != "":
		case !assigned && h.State != mdmd.ProfileRemoving:
			v.Drift = "no longer assigned"
		case assigned && h.Version != p.Version:
			v.Drift = "outdated version"
		case h.State == mdmd.ProfileFailed:
			v.Drift = "install failed: " + h.Error
		}
		out = append(out, v)
	}
	for id, p := range want {
		if _, ok := managed[id]; !ok {
			out = append(out, DeviceProfileView{DeviceProfile: mdmd.DeviceProfile{DeviceID: deviceID, Identifier: id, Version: 0, State: "pending"},
				Name: p.Name, CurrentVersion: p.Version, Drift: "not installed yet"})
		}
	}
	var unmanaged []string
	for _, id := range onDevice {
		if !managed[id] && !strings.HasPrefix(id, mdmd.AppleEnrollmentProfileID+".") {
			unmanaged = append(unmanaged, id)
		}
	}
	return out, unmanaged, nil
}

// profileInput is the API's body for creating or changing a profile.
type profileInput struct {
	Name         string           `json:"name"`
	Kind         mdmd.ProfileKind `json:"kind"`
	Settings     json.RawMessage  `json:"settings"`
	Mobileconfig string           `json:"mobileconfig_base64"`
}

func decodeProfileInput(r *http.Request) (Input, error) {
	var in profileInput
	if err := web.DecodeJSON(r, &in); err != nil {
		return Input{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(in.Mobileconfig)
	if err != nil {
		return Input{}, mdmd.FieldError("mobileconfig_base64", "not base64")
	}
	return Input{Name: in.Name, Kind: in.Kind, Settings: in.Settings, Mobileconfig: raw}, nil
}

// RegisterAPI adds the profile routes.
func (s *Service) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/profiles", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		in, err := decodeProfileInput(r)
		if err != nil {
			return err
		}
		p, err := s.Create(r.Context(), in, web.PrincipalFrom(r.Context()).Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "profile.create", "profile", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": p.Name, "kind": p.Kind, "identifier": p.Identifier})
		web.WriteJSON(w, http.StatusCreated, p)
		return nil
	})
	reg.Handle("GET", "/profiles", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		ps, err := s.st.ListProfiles(r.Context())
		if err != nil {
			return err
		}
		if ps == nil {
			ps = []mdmd.Profile{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": ps})
		return nil
	})
	reg.Handle("GET", "/profiles/{id}", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		p, as, err := s.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"profile": p, "assignments": as})
		return nil
	})
	// The payload may hold secrets (Wi-Fi passwords), so only profile
	// managers may download it.
	reg.Handle("GET", "/profiles/{id}/mobileconfig", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		xml, _, err := s.Mobileconfig(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-apple-aspen-config")
		w.Write(xml)
		return nil
	})
	reg.HandleJSON("PATCH", "/profiles/{id}", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		in, err := decodeProfileInput(r)
		if err != nil {
			return err
		}
		p, err := s.Update(r.Context(), chi.URLParam(r, "id"), in)
		if err != nil {
			return err
		}
		reg.Audit(r, "profile.update", "profile", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"version": p.Version})
		web.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	reg.Handle("DELETE", "/profiles/{id}", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := s.Delete(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "profile.delete", "profile", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	assignment := func(r *http.Request) (*mdmd.ProfileAssignment, error) {
		var in struct {
			TargetType string `json:"target_type"`
			TargetID   string `json:"target_id"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return &mdmd.ProfileAssignment{ProfileID: chi.URLParam(r, "id"), TargetType: in.TargetType, TargetID: in.TargetID}, nil
	}
	reg.HandleJSON("POST", "/profiles/{id}/assignments", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		a, err := assignment(r)
		if err != nil {
			return err
		}
		if err := s.Assign(r.Context(), a); err != nil {
			return err
		}
		reg.Audit(r, "profile.assign", "profile", a.ProfileID, mdmd.OutcomeSuccess, "", a)
		web.WriteJSON(w, http.StatusCreated, a)
		return nil
	})
	reg.HandleJSON("DELETE", "/profiles/{id}/assignments", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		a, err := assignment(r)
		if err != nil {
			return err
		}
		if err := s.Unassign(r.Context(), a); err != nil {
			return err
		}
		reg.Audit(r, "profile.unassign", "profile", a.ProfileID, mdmd.OutcomeSuccess, "", a)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	reg.Handle("GET", "/devices/{id}/profiles", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		views, unmanaged, err := s.DeviceView(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		if unmanaged == nil {
			unmanaged = []string{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": views, "unmanaged_on_device": unmanaged})
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/sync-profiles", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct{}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		if d, err := s.st.GetDevice(r.Context(), id); err != nil {
			return err
		} else if d.Platform != mdmd.PlatformIOS || d.EnrollmentState != mdmd.EnrollmentEnrolled {
			return mdmd.Errorf(mdmd.EConflict, "device is not an enrolled iOS device")
		}
		out, err := s.Reconcile(r.Context(), id, true)
		if err != nil {
			return err
		}
		if out == nil {
			out = []*mdmd.Command{}
		}
		reg.Audit(r, "device.sync_profiles", "device", id, mdmd.OutcomeSuccess, "", map[string]any{"commands": len(out)})
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"commands": out})
		return nil
	})
}
