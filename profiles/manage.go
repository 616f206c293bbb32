package profiles

import (
	"context"
	"encoding/json"

	"github.com/mdmd/mdmd"
)

// Input is a new profile or a change to one: its name, and either typed
// settings or (kind custom) an uploaded .mobileconfig. The admin API and
// the web console both manage profiles through the methods below, so
// they validate alike and queue the same reconciliation.
type Input struct {
	Name         string
	Kind         mdmd.ProfileKind
	Settings     json.RawMessage
	Mobileconfig []byte
}

func (s *Service) build(p *mdmd.Profile, in Input) error {
	if in.Name != "" {
		p.Name = in.Name
	}
	switch p.Kind {
	case mdmd.ProfileCustom:
		if in.Settings != nil {
			return mdmd.FieldError("settings", "an uploaded profile has no settings")
		}
		xml, identifier, err := ParseUpload(in.Mobileconfig)
		if err != nil {
			return err
		}
		if p.Identifier != "" && identifier != p.Identifier {
			return mdmd.FieldError("mobileconfig_base64", "the PayloadIdentifier must stay %s", p.Identifier)
		}
		p.Identifier, p.Payload, p.Settings = identifier, xml, nil
	default:
		if len(in.Mobileconfig) > 0 {
			return mdmd.FieldError("mobileconfig_base64", "only custom profiles are uploaded")
		}
		if p.Kind == mdmd.ProfileVPN && len(p.Settings) > 0 {
			// Keep the VPN's UUID across updates.
			var prev, next map[string]any
			if json.Unmarshal(p.Settings, &prev) == nil && json.Unmarshal(in.Settings, &next) == nil && next != nil && prev["vpn_uuid"] != nil {
				next["vpn_uuid"] = prev["vpn_uuid"]
				in.Settings, _ = json.Marshal(next)
			}
		}
		payload, settings, err := Build(p.Kind, p.Identifier, p.Name, s.org, in.Settings)
		if err != nil {
			return err
		}
		p.Payload, p.Settings = payload, settings
	}
	return nil
}

// buildSealed builds p from in and seals its payload for storage.
func (s *Service) buildSealed(p *mdmd.Profile, in Input) error {
	if err := s.build(p, in); err != nil {
		return err
	}
	return s.sealPayload(p)
}

// Create builds, seals and stores a new profile made by the named admin.
func (s *Service) Create(ctx context.Context, in Input, by string) (*mdmd.Profile, error) {
	if !in.Kind.Valid() {
		return nil, mdmd.FieldError("kind", "must be passcode, restrictions, wifi, vpn or custom, got %q", in.Kind)
	}
	p := &mdmd.Profile{ID: newProfileID(), Kind: in.Kind, CreatedBy: by}
	if in.Kind != mdmd.ProfileCustom {
		p.Identifier = Identifier(p.ID)
	}
	if in.Name == "" {
		return nil, mdmd.FieldError("name", "required")
	}
	if err := s.buildSealed(p, in); err != nil {
		return nil, err
	}
	if err := s.st.CreateProfile(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Update rebuilds a profile as a new version and queues its installation
// where it is assigned. A typed profile without settings keeps its own,
// except Wi-Fi and VPN profiles, whose secrets must be given again.
func (s *Service) Update(ctx context.Context, id string, in Input) (*mdmd.Profile, error) {
	p, err := s.st.GetProfile(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.Kind != "" && in.Kind != p.Kind {
		return nil, mdmd.FieldError("kind", "a profile's kind cannot change")
	}
	if p.Kind != mdmd.ProfileCustom && in.Settings == nil {
		in.Settings = p.Settings
		if p.Kind == mdmd.ProfileWiFi || p.Kind == mdmd.ProfileVPN {
			return nil, mdmd.FieldError("settings", "give the full settings again (secrets are not kept in readable form)")
		}
	}
	if err := s.buildSealed(p, in); err != nil {
		return nil, err
	}
	if err := s.st.UpdateProfile(ctx, p); err != nil {
		return nil, err
	}
	return p, s.profileChanged(ctx, p.ID, nil)
}

// Delete removes a profile and queues its removal from the devices that
// have it.
func (s *Service) Delete(ctx context.Context, id string) error {
	ids, err := s.st.DevicesForProfile(ctx, id)
	if err != nil {
		return err
	}
	if err := s.st.DeleteProfile(ctx, id); err != nil {
		return err
	}
	return s.ScheduleReconcile(ctx, ids)
}

// Assign puts a profile on a device or a group and queues its
// installation there.
func (s *Service) Assign(ctx context.Context, a *mdmd.ProfileAssignment) error {
	if err := s.st.AssignProfile(ctx, a); err != nil {
		return err
	}
	return s.profileChanged(ctx, a.ProfileID, nil)
}

// Unassign removes an assignment and queues the profile's removal from
// the devices it reached.
func (s *Service) Unassign(ctx context.Context, a *mdmd.ProfileAssignment) error {
	// The devices the assignment reached, before it goes.
	ids, err := s.st.DevicesForProfile(ctx, a.ProfileID)
	if err != nil {
		return err
	}
	if err := s.st.UnassignProfile(ctx, a); err != nil {
		return err
	}
	return s.ScheduleReconcile(ctx, ids)
}

// Get returns a profile and its assignments.
func (s *Service) Get(ctx context.Context, id string) (*mdmd.Profile, []mdmd.ProfileAssignment, error) {
	p, err := s.st.GetProfile(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	as, err := s.st.ListAssignments(ctx, p.ID)
	if err != nil {
		return nil, nil, err
	}
	if as == nil {
		as = []mdmd.ProfileAssignment{}
	}
	return p, as, nil
}

// Mobileconfig returns a profile's .mobileconfig (unsigned XML, which may
// hold secrets such as a Wi-Fi password) and the profile.
func (s *Service) Mobileconfig(ctx context.Context, id string) ([]byte, *mdmd.Profile, error) {
	p, err := s.st.GetProfile(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	xml, err := s.payload(p)
	return xml, p, err
}

// Summary is a profile with where it is assigned and how many devices
// have it, by install state.
type Summary struct {
	mdmd.Profile
	Assignments []mdmd.ProfileAssignment
	Installs    map[string]int64
}

// Summaries lists every profile with its assignments and install counts.
func (s *Service) Summaries(ctx context.Context) ([]Summary, error) {
	ps, err := s.st.ListProfiles(ctx)
	if err != nil {
		return nil, err
	}
	as, err := s.st.ListAllAssignments(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := s.st.CountProfileInstalls(ctx)
	if err != nil {
		return nil, err
	}
	byProfile := map[string][]mdmd.ProfileAssignment{}
	for _, a := range as {
		byProfile[a.ProfileID] = append(byProfile[a.ProfileID], a)
	}
	out := make([]Summary, len(ps))
	for i, p := range ps {
		out[i] = Summary{Profile: p, Assignments: byProfile[p.ID], Installs: counts[p.ID]}
	}
	return out, nil
}

// Install is one device's copy of a profile.
type Install struct {
	mdmd.DeviceProfile
	Device *mdmd.Device // nil if the device is gone
}

// Installs returns up to limit devices' copies of a profile with their
// state, by device.
func (s *Service) Installs(ctx context.Context, profileID string, limit int) ([]Install, error) {
	rows, devs, err := s.st.ProfileInstalls(ctx, profileID, limit)
	if err != nil {
		return nil, err
	}
	byID := map[string]*mdmd.Device{}
	for i := range devs {
		byID[devs[i].ID] = &devs[i]
	}
	out := make([]Install, len(rows))
	for i, r := range rows {
		out[i] = Install{DeviceProfile: r, Device: byID[r.DeviceID]}
	}
	return out, nil
}
