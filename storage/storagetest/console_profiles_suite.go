package storagetest

import (
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// consoleProfilesTests are the conformance tests of the store methods behind
// the console's profile pages.
func consoleProfilesTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"ConsoleProfileOverview", testConsoleProfileOverview},
	}
}

// Every assignment at once, install counts by profile and state, and a
// profile's installs with their devices.
func testConsoleProfileOverview(t *testing.T, s *storage.Store) {
	newProfile := func(name string) *mdmd.Profile {
		p := &mdmd.Profile{Name: name, Identifier: "io.test." + name, Kind: mdmd.ProfileCustom, Payload: []byte("<plist/>")}
		must(t, s.CreateProfile(ctx, p))
		return p
	}
	a, b, unused := newProfile("a"), newProfile("b"), newProfile("unused")
	d1, d2, d3 := iosDevice("CP1"), iosDevice("CP2"), iosDevice("CP3")
	for _, d := range []*mdmd.Device{d1, d2, d3} {
		must(t, s.CreateDevice(ctx, d))
	}
	g := &mdmd.Group{Name: "overview"}
	must(t, s.CreateGroup(ctx, g))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: b.ID, TargetType: mdmd.TargetGroup, TargetID: g.ID}))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: a.ID, TargetType: mdmd.TargetGroup, TargetID: g.ID}))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: a.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID}))

	as, err := s.ListAllAssignments(ctx)
	must(t, err)
	want := []mdmd.ProfileAssignment{{ProfileID: a.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID},
		{ProfileID: a.ID, TargetType: mdmd.TargetGroup, TargetID: g.ID}, {ProfileID: b.ID, TargetType: mdmd.TargetGroup, TargetID: g.ID}}
	if a.ID > b.ID {
		want = []mdmd.ProfileAssignment{want[2], want[0], want[1]}
	}
	if len(as) != len(want) {
		t.Fatalf("all assignments = %+v", as)
	}
	for i := range want {
		if as[i].ProfileID != want[i].ProfileID || as[i].TargetType != want[i].TargetType || as[i].TargetID != want[i].TargetID {
			t.Fatalf("assignment %d = %+v, want %+v", i, as[i], want[i])
		}
	}

	put := func(p *mdmd.Profile, d *mdmd.Device, state string) {
		pid := p.ID
		must(t, s.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: d.ID, Identifier: p.Identifier, ProfileID: &pid, Version: 1,
			State: state, CommandID: "cmd-" + d.ID + p.ID}))
	}
	put(a, d1, mdmd.ProfileInstalled)
	put(a, d2, mdmd.ProfileInstalled)
	put(a, d3, mdmd.ProfileFailed)
	put(b, d2, mdmd.ProfileInstalling)
	// A copy whose profile was deleted is counted nowhere.
	gone := newProfile("gone")
	put(gone, d3, mdmd.ProfileInstalled)
	must(t, s.DeleteProfile(ctx, gone.ID))

	counts, err := s.CountProfileInstalls(ctx)
	must(t, err)
	if len(counts) != 2 || counts[a.ID][mdmd.ProfileInstalled] != 2 || counts[a.ID][mdmd.ProfileFailed] != 1 ||
		counts[b.ID][mdmd.ProfileInstalling] != 1 || len(counts[b.ID]) != 1 || counts[unused.ID] != nil {
		t.Fatalf("install counts = %v", counts)
	}

	rows, devs, err := s.ProfileInstalls(ctx, a.ID, 0)
	must(t, err)
	if len(rows) != 3 || len(devs) != 3 {
		t.Fatalf("installs of a: %d rows, %d devices", len(rows), len(devs))
	}
	byID := map[string]string{}
	for _, d := range devs {
		byID[d.ID] = d.Name
	}
	for i, r := range rows {
		if i > 0 && rows[i-1].DeviceID >= r.DeviceID {
			t.Fatalf("installs not by device ID: %+v", rows)
		}
		if byID[r.DeviceID] == "" || r.ProfileID == nil || *r.ProfileID != a.ID {
			t.Fatalf("install %+v without its device (%v)", r, byID)
		}
	}
	if rows, _, _ := s.ProfileInstalls(ctx, a.ID, 2); len(rows) != 2 {
		t.Fatalf("limit 2 gave %d installs", len(rows))
	}
	if rows, devs, err := s.ProfileInstalls(ctx, unused.ID, 10); err != nil || len(rows) != 0 || len(devs) != 0 {
		t.Fatalf("installs of an unused profile: %v %v %v", rows, devs, err)
	}
}
