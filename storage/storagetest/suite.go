package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// Run runs the conformance suite. newStore must return an empty, migrated
// store that is private to the subtest.
func Run(t *testing.T, newStore func(t *testing.T) *storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"Devices", testDevices},
		{"DeviceValidation", testDeviceValidation},
		{"DeviceListing", testDeviceListing},
		{"MarkDevicesSeen", testMarkSeen},
		{"Groups", testGroups},
		{"CommandQueue", testCommandQueue},
		{"CommandResults", testCommandResults},
		{"NotNowAcrossConnections", testNotNowAcrossConnections},
		{"CommandPrune", testCommandPrune},
		{"Audit", testAudit},
		{"AuditConcurrent", testAuditConcurrent},
		{"AdminUsers", testAdminUsers},
		{"APITokens", testAPITokens},
		{"KeypairsAndSettings", testKeypairsAndSettings},
		{"Transactions", testTransactions},
		{"Jobs", testJobs},
		{"JobLeases", testJobLeases},
		{"JobConcurrentClaims", testJobConcurrentClaims},
	}
	tests = append(tests, appleTests()...)
	tests = append(tests, androidTests()...)
	tests = append(tests, complianceTests()...)
	tests = append(tests, eventTests()...)
	tests = append(tests, webhookTests()...)
	tests = append(tests, ssfTests()...)
	tests = append(tests, approvalTests()...)
	tests = append(tests, consoleTests()...)
	tests = append(tests, consoleGroupsTests()...)
	tests = append(tests, consoleProfilesTests()...)
	tests = append(tests, consoleSettingsTests()...)
	tests = append(tests, bulkTests()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var ctx = context.Background()

func ptr[T any](v T) *T { return &v }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := mdmd.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func iosDevice(udid string) *mdmd.Device {
	return &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: ptr(udid), Name: "iPhone " + udid,
		SerialNumber: "SN" + udid, Model: "iPhone15,2", OSVersion: "17.4",
		Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: "alice@example.com"}
}

func androidDevice(id string) *mdmd.Device {
	return &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: ptr("enterprises/LC01/devices/" + id),
		Name: "Pixel " + id, Model: "Pixel 8", OSVersion: "14", Ownership: mdmd.OwnershipPersonal,
		EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: "bob@example.com"}
}

func testDevices(t *testing.T, s *storage.Store) {
	d := iosDevice("U1")
	must(t, s.CreateDevice(ctx, d))
	if d.ID == "" || d.CreatedAt.IsZero() {
		t.Fatalf("CreateDevice did not assign ID and times: %+v", d)
	}
	got, err := s.GetDevice(ctx, d.ID)
	must(t, err)
	if *got.UDID != "U1" || got.Platform != mdmd.PlatformIOS || got.OwnerUser != "alice@example.com" || !got.CreatedAt.Equal(d.CreatedAt) {
		t.Fatalf("GetDevice = %+v, want %+v", got, d)
	}
	byUDID, err := s.GetDeviceByUDID(ctx, "U1")
	must(t, err)
	if byUDID.ID != d.ID {
		t.Fatalf("GetDeviceByUDID = %s, want %s", byUDID.ID, d.ID)
	}
	wantCode(t, s.CreateDevice(ctx, iosDevice("U1")), mdmd.EConflict)

	a := androidDevice("D1")
	must(t, s.CreateDevice(ctx, a))
	byName, err := s.GetDeviceByAMAPIName(ctx, "enterprises/LC01/devices/D1")
	must(t, err)
	if byName.ID != a.ID || byName.UDID != nil {
		t.Fatalf("GetDeviceByAMAPIName = %+v", byName)
	}
	wantCode(t, s.CreateDevice(ctx, androidDevice("D1")), mdmd.EConflict)

	_, err = s.GetDevice(ctx, "nope")
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.GetDeviceByUDID(ctx, "nope")
	wantCode(t, err, mdmd.ENotFound)

	enrolledAt := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	upd, err := s.UpdateDevice(ctx, d.ID, mdmd.DeviceUpdate{
		Name: ptr("Renamed"), OSVersion: ptr("18.0"), EnrollmentState: ptr(mdmd.EnrollmentUnenrolled),
		Ownership: ptr(mdmd.OwnershipPersonal), EnrolledAt: &enrolledAt,
	})
	must(t, err)
	if upd.Name != "Renamed" || upd.OSVersion != "18.0" || upd.EnrollmentState != mdmd.EnrollmentUnenrolled ||
		upd.Ownership != mdmd.OwnershipPersonal || upd.Model != "iPhone15,2" || !upd.EnrolledAt.Equal(enrolledAt) {
		t.Fatalf("UpdateDevice = %+v", upd)
	}
	_, err = s.UpdateDevice(ctx, "nope", mdmd.DeviceUpdate{Name: ptr("x")})
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.UpdateDevice(ctx, d.ID, mdmd.DeviceUpdate{EnrollmentState: ptr(mdmd.EnrollmentState("bogus"))})
	wantCode(t, err, mdmd.EInvalid)
	again, _ := s.GetDevice(ctx, d.ID)
	if again.EnrollmentState != mdmd.EnrollmentUnenrolled {
		t.Fatalf("a rejected update changed the device: %+v", again)
	}

	// Deleting a device removes its commands and memberships.
	g := &mdmd.Group{Name: "sales"}
	must(t, s.CreateGroup(ctx, g))
	must(t, s.AddGroupMembers(ctx, g.ID, []string{d.ID}))
	c := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceInformation"}
	must(t, s.EnqueueCommand(ctx, c))
	// An enrolled device cannot be deleted; an unenrolled one can.
	wantCode(t, s.DeleteDevice(ctx, a.ID), mdmd.EConflict)
	if _, err := s.GetDevice(ctx, a.ID); err != nil {
		t.Fatalf("refused deletion removed the device: %v", err)
	}
	must(t, s.DeleteDevice(ctx, d.ID))
	wantCode(t, s.DeleteDevice(ctx, d.ID), mdmd.ENotFound)
	_, err = s.GetCommand(ctx, c.ID)
	wantCode(t, err, mdmd.ENotFound)
	n, err := s.CountDevices(ctx, mdmd.DeviceFilter{GroupID: g.ID})
	must(t, err)
	if n != 0 {
		t.Fatalf("deleted device still in group: %d members", n)
	}
}

func testDeviceValidation(t *testing.T, s *storage.Store) {
	tests := []struct {
		name  string
		edit  func(d *mdmd.Device)
		field string
	}{
		{"unknown platform", func(d *mdmd.Device) { d.Platform = "windows" }, "platform"},
		{"unknown ownership", func(d *mdmd.Device) { d.Ownership = "shared" }, "ownership"},
		{"unknown state", func(d *mdmd.Device) { d.EnrollmentState = "limbo" }, "enrollment_state"},
		{"ios without udid", func(d *mdmd.Device) { d.UDID = nil }, "udid"},
		{"ios with amapi name", func(d *mdmd.Device) { d.AMAPIName = ptr("enterprises/x/devices/y") }, "amapi_name"},
		{"android without name", func(d *mdmd.Device) {
			d.Platform, d.UDID = mdmd.PlatformAndroid, nil
		}, "amapi_name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := iosDevice("V-" + tc.field)
			tc.edit(d)
			err := s.CreateDevice(ctx, d)
			var me *mdmd.Error
			if !errors.As(err, &me) || me.Code != mdmd.EInvalid || me.Field != tc.field {
				t.Fatalf("CreateDevice error = %v, want invalid %s", err, tc.field)
			}
		})
	}
	n, err := s.CountDevices(ctx, mdmd.DeviceFilter{})
	must(t, err)
	if n != 0 {
		t.Fatalf("invalid devices were stored: %d", n)
	}
}

func testDeviceListing(t *testing.T, s *storage.Store) {
	var ids []string
	for i := 0; i < 7; i++ {
		d := iosDevice(fmt.Sprintf("L%d", i))
		if i%2 == 1 {
			d = androidDevice(fmt.Sprintf("L%d", i))
		}
		if i == 3 {
			d.Name = "CEO_phone 100%"
		}
		must(t, s.CreateDevice(ctx, d))
		ids = append(ids, d.ID)
	}
	g := &mdmd.Group{Name: "vip"}
	must(t, s.CreateGroup(ctx, g))
	must(t, s.AddGroupMembers(ctx, g.ID, []string{ids[0], ids[3]}))

	count := func(f mdmd.DeviceFilter) int {
		t.Helper()
		got, next, err := s.ListDevices(ctx, f)
		must(t, err)
		if next != "" {
			t.Fatalf("unexpected next page for %+v", f)
		}
		n, err := s.CountDevices(ctx, f)
		must(t, err)
		if int(n) != len(got) {
			t.Fatalf("CountDevices = %d, ListDevices = %d for %+v", n, len(got), f)
		}
		return len(got)
	}
	tests := []struct {
		name string
		f    mdmd.DeviceFilter
		want int
	}{
		{"all", mdmd.DeviceFilter{}, 7},
		{"ios", mdmd.DeviceFilter{Platform: mdmd.PlatformIOS}, 4},
		{"android personal", mdmd.DeviceFilter{Platform: mdmd.PlatformAndroid, Ownership: mdmd.OwnershipPersonal}, 3},
		{"owner", mdmd.DeviceFilter{OwnerUser: "bob@example.com"}, 3},
		{"group", mdmd.DeviceFilter{GroupID: g.ID}, 2},
		{"state", mdmd.DeviceFilter{EnrollmentState: mdmd.EnrollmentPending}, 0},
		{"search serial", mdmd.DeviceFilter{Query: "snl2"}, 1},
		{"search udid", mdmd.DeviceFilter{Query: "L4"}, 1},
		{"search model", mdmd.DeviceFilter{Query: "pixel 8"}, 3},
		{"search literal percent", mdmd.DeviceFilter{Query: "100%"}, 1},
		{"search literal underscore", mdmd.DeviceFilter{Query: "o_p"}, 1},
		{"wildcards are not wild", mdmd.DeviceFilter{Query: "%"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := count(tc.f); got != tc.want {
				t.Fatalf("got %d devices, want %d", got, tc.want)
			}
		})
	}

	// Paging visits every device once, in ID order.
	var seen []string
	f := mdmd.DeviceFilter{Limit: 3}
	for pages := 0; ; pages++ {
		page, next, err := s.ListDevices(ctx, f)
		must(t, err)
		for _, d := range page {
			seen = append(seen, d.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		f.After = next
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Fatalf("paged IDs = %v, want %v", seen, ids)
	}

	for _, bad := range []mdmd.DeviceFilter{{Platform: "windows"}, {Ownership: "x"}, {EnrollmentState: "x"}, {Limit: mdmd.MaxPageSize + 1}} {
		_, _, err := s.ListDevices(ctx, bad)
		wantCode(t, err, mdmd.EInvalid)
	}
}

func testMarkSeen(t *testing.T, s *storage.Store) {
	a, b := iosDevice("S1"), iosDevice("S2")
	must(t, s.CreateDevice(ctx, a))
	must(t, s.CreateDevice(ctx, b))
	t1 := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)
	n, err := s.MarkDevicesSeen(ctx, []string{a.ID, b.ID, "missing"}, t1)
	must(t, err)
	if n != 2 {
		t.Fatalf("MarkDevicesSeen updated %d, want 2", n)
	}
	// An older time never moves last-seen backwards.
	n, err = s.MarkDevicesSeen(ctx, []string{a.ID}, t1.Add(-time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("older time updated %d rows", n)
	}
	got, _ := s.GetDevice(ctx, a.ID)
	if got.LastSeenAt == nil || !got.LastSeenAt.Equal(t1) {
		t.Fatalf("last seen = %v, want %v", got.LastSeenAt, t1)
	}
	if n, _ := s.MarkDevicesSeen(ctx, nil, t1); n != 0 {
		t.Fatal("empty batch updated rows")
	}
	// Times in other zones compare by instant, not by their text.
	ny, _ := time.LoadLocation("America/New_York")
	tokyo := time.FixedZone("JST", 9*3600)
	n, err = s.MarkDevicesSeen(ctx, []string{b.ID}, t1.Add(-2*time.Hour).In(ny))
	must(t, err)
	if n != 0 {
		t.Fatal("an older time in another zone moved last-seen backwards")
	}
	n, err = s.MarkDevicesSeen(ctx, []string{b.ID}, t1.Add(time.Minute).In(tokyo))
	must(t, err)
	got, _ = s.GetDevice(ctx, b.ID)
	if n != 1 || !got.LastSeenAt.Equal(t1.Add(time.Minute)) {
		t.Fatalf("newer time in another zone: n=%d last seen %v", n, got.LastSeenAt)
	}
	zoned := iosDevice("S3")
	seen := t1.In(ny)
	zoned.LastSeenAt = &seen
	must(t, s.CreateDevice(ctx, zoned))
	if n, _ := s.MarkDevicesSeen(ctx, []string{zoned.ID}, t1.Add(-time.Hour)); n != 0 {
		t.Fatal("a device created with a zoned time went backwards")
	}
}

func testGroups(t *testing.T, s *storage.Store) {
	g := &mdmd.Group{Name: "field", Description: "field staff"}
	must(t, s.CreateGroup(ctx, g))
	wantCode(t, s.CreateGroup(ctx, &mdmd.Group{Name: "field"}), mdmd.EConflict)
	wantCode(t, s.CreateGroup(ctx, &mdmd.Group{Name: " padded"}), mdmd.EInvalid)
	wantCode(t, s.CreateGroup(ctx, &mdmd.Group{Name: ""}), mdmd.EInvalid)
	other := &mdmd.Group{Name: "office"}
	must(t, s.CreateGroup(ctx, other))

	upd, err := s.UpdateGroup(ctx, g.ID, ptr("field-ops"), nil)
	must(t, err)
	if upd.Name != "field-ops" || upd.Description != "field staff" {
		t.Fatalf("UpdateGroup = %+v", upd)
	}
	// Concurrent edits of different fields both survive.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i == 0 {
				_, err = s.UpdateGroup(ctx, other.ID, ptr("office-hq"), nil)
			} else {
				_, err = s.UpdateGroup(ctx, other.ID, nil, ptr("head office"))
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	both, err := s.GetGroup(ctx, other.ID)
	must(t, err)
	if both.Name != "office-hq" || both.Description != "head office" {
		t.Fatalf("concurrent edits lost one: %+v", both)
	}
	_, err = s.GetGroup(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.UpdateGroup(ctx, g.ID, ptr("office-hq"), nil)
	wantCode(t, err, mdmd.EConflict)
	_, err = s.UpdateGroup(ctx, "nope", ptr("x"), nil)
	wantCode(t, err, mdmd.ENotFound)

	groups, err := s.ListGroups(ctx)
	must(t, err)
	if len(groups) != 2 || groups[0].Name != "field-ops" || groups[1].Name != "office-hq" {
		t.Fatalf("ListGroups = %+v", groups)
	}

	d := iosDevice("G1")
	must(t, s.CreateDevice(ctx, d))
	must(t, s.AddGroupMembers(ctx, g.ID, []string{d.ID}))
	must(t, s.AddGroupMembers(ctx, g.ID, []string{d.ID})) // idempotent
	must(t, s.AddGroupMembers(ctx, other.ID, []string{d.ID}))
	// An unknown device fails the whole call and adds nothing.
	d2 := iosDevice("G2")
	must(t, s.CreateDevice(ctx, d2))
	wantCode(t, s.AddGroupMembers(ctx, g.ID, []string{d2.ID, "missing"}), mdmd.ENotFound)
	wantCode(t, s.AddGroupMembers(ctx, "missing", []string{d.ID}), mdmd.ENotFound)
	if gs, _ := s.DeviceGroups(ctx, d2.ID); len(gs) != 0 {
		t.Fatalf("failed AddGroupMembers left memberships: %+v", gs)
	}
	gs, err := s.DeviceGroups(ctx, d.ID)
	must(t, err)
	if len(gs) != 2 {
		t.Fatalf("DeviceGroups = %+v", gs)
	}
	must(t, s.RemoveGroupMembers(ctx, other.ID, []string{d.ID}))
	gs, _ = s.DeviceGroups(ctx, d.ID)
	if len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("after removal DeviceGroups = %+v", gs)
	}
	must(t, s.DeleteGroup(ctx, g.ID))
	wantCode(t, s.DeleteGroup(ctx, g.ID), mdmd.ENotFound)
	if _, err := s.GetDevice(ctx, d.ID); err != nil {
		t.Fatalf("deleting a group deleted its device: %v", err)
	}
	gs, _ = s.DeviceGroups(ctx, d.ID)
	if len(gs) != 0 {
		t.Fatalf("memberships survived group deletion: %+v", gs)
	}
}

func testCommandQueue(t *testing.T, s *storage.Store) {
	d, other := iosDevice("C1"), iosDevice("C2")
	must(t, s.CreateDevice(ctx, d))
	must(t, s.CreateDevice(ctx, other))
	wantCode(t, s.EnqueueCommand(ctx, &mdmd.Command{DeviceID: "missing", RequestType: "DeviceLock"}), mdmd.ENotFound)
	wantCode(t, s.EnqueueCommand(ctx, &mdmd.Command{DeviceID: d.ID}), mdmd.EInvalid)
	wantCode(t, s.EnqueueCommand(ctx, &mdmd.Command{DeviceID: d.ID, RequestType: "X", Priority: 101}), mdmd.EInvalid)

	first := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceInformation", Payload: []byte("<plist/>"), CreatedBy: "admin"}
	must(t, s.EnqueueCommand(ctx, first))
	second := &mdmd.Command{DeviceID: d.ID, RequestType: "SecurityInfo"}
	must(t, s.EnqueueCommand(ctx, second))
	urgent := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceLock", Priority: 50}
	must(t, s.EnqueueCommand(ctx, urgent))
	must(t, s.EnqueueCommand(ctx, &mdmd.Command{DeviceID: other.ID, RequestType: "EraseDevice"}))

	next := func(skip ...string) *mdmd.Command {
		t.Helper()
		c, err := s.NextCommand(ctx, d.ID, skip)
		must(t, err)
		return c
	}
	c := next()
	if c == nil || c.ID != urgent.ID || c.Status != mdmd.CommandSent || c.Deliveries != 1 || c.SentAt == nil {
		t.Fatalf("first NextCommand = %+v, want the urgent command sent", c)
	}
	// Unanswered, it is handed out again (the device may have lost it).
	if c = next(); c.ID != urgent.ID || c.Deliveries != 2 {
		t.Fatalf("re-delivery = %+v", c)
	}
	// NotNow'd commands are skipped for the rest of the connection.
	if c = next(urgent.ID); c.ID != first.ID || string(c.Payload) != "<plist/>" {
		t.Fatalf("NextCommand skipping urgent = %+v, want first", c)
	}
	if c = next(urgent.ID, first.ID, second.ID); c != nil {
		t.Fatalf("everything skipped but got %+v", c)
	}
	empty := iosDevice("C3")
	must(t, s.CreateDevice(ctx, empty))
	if c, err := s.NextCommand(ctx, empty.ID, nil); err != nil || c != nil {
		t.Fatalf("empty queue NextCommand = %+v, %v", c, err)
	}

	cmds, cursor, err := s.ListCommands(ctx, mdmd.CommandFilter{DeviceID: d.ID, Limit: 2})
	must(t, err)
	if len(cmds) != 2 || cmds[0].ID != urgent.ID || cursor == "" {
		t.Fatalf("ListCommands page 1 = %d commands, first %s, cursor %q", len(cmds), cmds[0].ID, cursor)
	}
	cmds, cursor, err = s.ListCommands(ctx, mdmd.CommandFilter{DeviceID: d.ID, Limit: 2, After: cursor})
	must(t, err)
	if len(cmds) != 1 || cmds[0].ID != first.ID || cursor != "" {
		t.Fatalf("ListCommands page 2 = %+v, cursor %q", cmds, cursor)
	}
	queued, _, err := s.ListCommands(ctx, mdmd.CommandFilter{Status: mdmd.CommandQueued})
	must(t, err)
	if len(queued) != 2 {
		t.Fatalf("queued commands = %d, want 2 (second and other's)", len(queued))
	}
	_, _, err = s.ListCommands(ctx, mdmd.CommandFilter{Status: "bogus"})
	wantCode(t, err, mdmd.EInvalid)

	canceled, err := s.CancelCommand(ctx, second.ID)
	must(t, err)
	if canceled.Status != mdmd.CommandCanceled || canceled.CompletedAt == nil {
		t.Fatalf("CancelCommand = %+v", canceled)
	}
	_, err = s.CancelCommand(ctx, second.ID)
	wantCode(t, err, mdmd.EConflict)
	_, err = s.CancelCommand(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
	if c = next(urgent.ID, first.ID); c != nil {
		t.Fatalf("canceled command delivered: %+v", c)
	}
}

func testCommandResults(t *testing.T, s *storage.Store) {
	d, other := iosDevice("R1"), iosDevice("R2")
	must(t, s.CreateDevice(ctx, d))
	must(t, s.CreateDevice(ctx, other))
	c := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceInformation"}
	must(t, s.EnqueueCommand(ctx, c))
	// A device cannot answer a command it was never sent.
	_, err := s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged})
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.NextCommand(ctx, d.ID, nil)
	must(t, err)

	// Another device cannot answer for this one: the command does not exist for it.
	_, err = s.RecordCommandResult(ctx, other.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged})
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.RecordCommandResult(ctx, d.ID, "missing", mdmd.CommandResult{Status: mdmd.CommandAcknowledged})
	wantCode(t, err, mdmd.ENotFound)
	for _, st := range []mdmd.CommandStatus{mdmd.CommandQueued, mdmd.CommandCanceled, "Bogus"} {
		_, err = s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: st})
		wantCode(t, err, mdmd.EInvalid)
	}

	got, err := s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandNotNow, Raw: []byte("nn")})
	must(t, err)
	if got.Status != mdmd.CommandNotNow || got.CompletedAt != nil {
		t.Fatalf("NotNow result = %+v", got)
	}
	if n, _ := s.NextCommand(ctx, d.ID, nil); n == nil || n.ID != c.ID {
		t.Fatalf("NotNow command not retried on a later connection: %+v", n)
	}
	got, err = s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandError, Raw: []byte("<raw/>"), Error: "ErrorChain: 12021"})
	must(t, err)
	if got.Status != mdmd.CommandError || string(got.Result) != "<raw/>" || got.Error != "ErrorChain: 12021" || got.CompletedAt == nil {
		t.Fatalf("Error result = %+v", got)
	}
	_, err = s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged, Raw: []byte("late")})
	wantCode(t, err, mdmd.EConflict)
	stored, _ := s.GetCommand(ctx, c.ID)
	if stored.Status != mdmd.CommandError || string(stored.Result) != "<raw/>" {
		t.Fatalf("a rejected result changed the command: %+v", stored)
	}
	if n, _ := s.NextCommand(ctx, d.ID, nil); n != nil {
		t.Fatalf("completed command delivered again: %+v", n)
	}
}

// testNotNowAcrossConnections: a command deferred in one connection is
// skipped for the rest of that connection only.
func testNotNowAcrossConnections(t *testing.T, s *storage.Store) {
	d := iosDevice("NN1")
	must(t, s.CreateDevice(ctx, d))
	info := &mdmd.Command{DeviceID: d.ID, RequestType: "SecurityInfo"}
	must(t, s.EnqueueCommand(ctx, info))
	// Connection 1: the device defers it; nothing else to do.
	c, err := s.NextCommand(ctx, d.ID, nil)
	must(t, err)
	_, err = s.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandNotNow})
	must(t, err)
	if c, _ := s.NextCommandAfterNotNow(ctx, d.ID); c != nil {
		t.Fatalf("deferred command handed out again in the same connection: %s", c.RequestType)
	}
	// Connection 2: a more urgent command goes first; after it, the command
	// deferred in connection 1 is due again.
	lock := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceLock", Priority: 90}
	must(t, s.EnqueueCommand(ctx, lock))
	c, err = s.NextCommand(ctx, d.ID, nil)
	must(t, err)
	if c.ID != lock.ID {
		t.Fatalf("first of connection 2 = %s", c.RequestType)
	}
	_, err = s.RecordCommandResult(ctx, d.ID, lock.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged})
	must(t, err)
	c, err = s.NextCommandAfterNotNow(ctx, d.ID)
	must(t, err)
	if c == nil || c.ID != info.ID || c.Deliveries != 2 {
		t.Fatalf("after the lock in connection 2 = %+v, want the deferred SecurityInfo again", c)
	}
}

func testCommandPrune(t *testing.T, s *storage.Store) {
	d := iosDevice("P1")
	must(t, s.CreateDevice(ctx, d))
	done := &mdmd.Command{DeviceID: d.ID, RequestType: "A", Priority: 1}
	open := &mdmd.Command{DeviceID: d.ID, RequestType: "B"}
	must(t, s.EnqueueCommand(ctx, done))
	must(t, s.EnqueueCommand(ctx, open))
	if c, _ := s.NextCommand(ctx, d.ID, nil); c.ID != done.ID {
		t.Fatal("unexpected delivery order")
	}
	_, err := s.RecordCommandResult(ctx, d.ID, done.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged})
	must(t, err)
	n, err := s.PruneCommands(ctx, time.Now().Add(-time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("pruned %d recent commands", n)
	}
	n, err = s.PruneCommands(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if _, err := s.GetCommand(ctx, open.ID); err != nil {
		t.Fatalf("active command pruned: %v", err)
	}
}

// VerifyChain checks the hash chain of every stored audit event.
func VerifyChain(t *testing.T, s *storage.Store) int {
	t.Helper()
	var after int64
	prev, n := "", 0
	for {
		evs, err := s.AuditRange(ctx, after, 500)
		must(t, err)
		if len(evs) == 0 {
			return n
		}
		for _, e := range evs {
			if e.Seq != after+1 || e.PrevHash != prev || e.ComputeHash(prev) != e.Hash {
				t.Fatalf("audit chain broken at seq %d (after %d)", e.Seq, after)
			}
			prev, after = e.Hash, e.Seq
			n++
		}
	}
}

func testAudit(t *testing.T, s *storage.Store) {
	wantCode(t, s.AppendAudit(ctx, &mdmd.AuditEvent{Action: "x"}), mdmd.EInvalid)
	for i := 0; i < 5; i++ {
		e := &mdmd.AuditEvent{ActorType: mdmd.ActorAdmin, Actor: fmt.Sprintf("admin%d", i%2), Action: "device.lock",
			TargetType: "device", TargetID: fmt.Sprintf("dev%d", i), Outcome: mdmd.OutcomeSuccess,
			Reason: "lost", Details: []byte(`{"pin": "123456", "n": ` + fmt.Sprint(i) + `}`)}
		must(t, s.AppendAudit(ctx, e))
		if e.Seq != int64(i+1) || e.Hash == "" {
			t.Fatalf("AppendAudit assigned seq %d hash %q", e.Seq, e.Hash)
		}
	}
	if n := VerifyChain(t, s); n != 5 {
		t.Fatalf("verified %d events, want 5", n)
	}
	evs, next, err := s.ListAudit(ctx, mdmd.AuditFilter{Limit: 2})
	must(t, err)
	if len(evs) != 2 || evs[0].Seq != 5 || next != 4 {
		t.Fatalf("ListAudit page = %d events from seq %d, next %d", len(evs), evs[0].Seq, next)
	}
	evs, _, err = s.ListAudit(ctx, mdmd.AuditFilter{Before: next})
	must(t, err)
	if len(evs) != 3 || evs[0].Seq != 3 {
		t.Fatalf("ListAudit page 2 = %d events", len(evs))
	}
	evs, _, err = s.ListAudit(ctx, mdmd.AuditFilter{Actor: "admin1"})
	must(t, err)
	if len(evs) != 2 {
		t.Fatalf("filter by actor = %d events, want 2", len(evs))
	}
	evs, _, err = s.ListAudit(ctx, mdmd.AuditFilter{TargetID: "dev3", Action: "device.lock"})
	must(t, err)
	if len(evs) != 1 || evs[0].Reason != "lost" {
		t.Fatalf("filter by target = %+v", evs)
	}
	evs, _, err = s.ListAudit(ctx, mdmd.AuditFilter{Since: time.Now().Add(time.Hour)})
	must(t, err)
	if len(evs) != 0 {
		t.Fatalf("future Since returned %d", len(evs))
	}
}

func testAuditConcurrent(t *testing.T, s *storage.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.AppendAudit(ctx, &mdmd.AuditEvent{ActorType: mdmd.ActorSystem, Actor: "t", Action: "tick", Outcome: mdmd.OutcomeSuccess})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if n := VerifyChain(t, s); n != 40 {
		t.Fatalf("chain holds %d events, want 40", n)
	}
}

func testAdminUsers(t *testing.T, s *storage.Store) {
	u := &mdmd.AdminUser{Username: "root@example.com", PasswordHash: "$argon2id$x", Role: mdmd.RoleAdmin}
	must(t, s.CreateAdminUser(ctx, u))
	wantCode(t, s.CreateAdminUser(ctx, &mdmd.AdminUser{Username: "root@example.com", PasswordHash: "h", Role: mdmd.RoleViewer}), mdmd.EConflict)
	wantCode(t, s.CreateAdminUser(ctx, &mdmd.AdminUser{Username: "x", PasswordHash: "h", Role: "superuser"}), mdmd.EInvalid)
	wantCode(t, s.CreateAdminUser(ctx, &mdmd.AdminUser{Username: "bad name", PasswordHash: "h", Role: mdmd.RoleViewer}), mdmd.EInvalid)
	got, err := s.GetAdminUserByUsername(ctx, "root@example.com")
	must(t, err)
	if got.ID != u.ID || got.PasswordHash != "$argon2id$x" || got.Role != mdmd.RoleAdmin {
		t.Fatalf("GetAdminUserByUsername = %+v", got)
	}
	_, err = s.GetAdminUser(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
	upd, err := s.UpdateAdminUser(ctx, u.ID, storage.AdminUserUpdate{Role: ptr(mdmd.RoleHelpdesk), Disabled: ptr(true)})
	must(t, err)
	if upd.Role != mdmd.RoleHelpdesk || !upd.Disabled || upd.PasswordHash != "$argon2id$x" {
		t.Fatalf("UpdateAdminUser = %+v", upd)
	}
	_, err = s.UpdateAdminUser(ctx, u.ID, storage.AdminUserUpdate{Role: ptr(mdmd.Role("god"))})
	wantCode(t, err, mdmd.EInvalid)
	_, err = s.UpdateAdminUser(ctx, "missing", storage.AdminUserUpdate{Disabled: ptr(false)})
	wantCode(t, err, mdmd.ENotFound)
	users, err := s.ListAdminUsers(ctx)
	must(t, err)
	if len(users) != 1 || users[0].Role != mdmd.RoleHelpdesk {
		t.Fatalf("ListAdminUsers = %+v", users)
	}
}

func testAPITokens(t *testing.T, s *storage.Store) {
	hash := fmt.Sprintf("%064x", 1)
	exp := time.Now().Add(24 * time.Hour)
	tok := &mdmd.APIToken{Name: "ci", Prefix: "mdmd_abc", Hash: hash, Role: mdmd.RoleViewer, ExpiresAt: exp, CreatedBy: "admin"}
	must(t, s.CreateAPIToken(ctx, tok))
	wantCode(t, s.CreateAPIToken(ctx, &mdmd.APIToken{Name: "dup", Hash: hash, Role: mdmd.RoleViewer, ExpiresAt: exp}), mdmd.EConflict)
	wantCode(t, s.CreateAPIToken(ctx, &mdmd.APIToken{Name: "noexp", Hash: fmt.Sprintf("%064x", 2), Role: mdmd.RoleViewer}), mdmd.EInvalid)
	wantCode(t, s.CreateAPIToken(ctx, &mdmd.APIToken{Name: "role", Hash: fmt.Sprintf("%064x", 3), Role: "root", ExpiresAt: exp}), mdmd.EInvalid)

	got, err := s.GetAPITokenByHash(ctx, hash)
	must(t, err)
	if got.ID != tok.ID || !got.Active(time.Now()) || got.Active(exp.Add(time.Second)) {
		t.Fatalf("GetAPITokenByHash = %+v", got)
	}
	_, err = s.GetAPITokenByHash(ctx, fmt.Sprintf("%064x", 9))
	wantCode(t, err, mdmd.ENotFound)

	t1 := time.Now().UTC()
	must(t, s.TouchAPIToken(ctx, tok.ID, t1))
	must(t, s.TouchAPIToken(ctx, tok.ID, t1.Add(30*time.Second))) // throttled
	got, _ = s.GetAPIToken(ctx, tok.ID)
	if got.LastUsedAt == nil || got.LastUsedAt.Sub(t1).Abs() > time.Millisecond {
		t.Fatalf("last used = %v, want %v", got.LastUsedAt, t1)
	}
	must(t, s.TouchAPIToken(ctx, tok.ID, t1.Add(2*time.Minute)))
	got, _ = s.GetAPIToken(ctx, tok.ID)
	if got.LastUsedAt.Sub(t1) < time.Minute {
		t.Fatalf("last used not advanced: %v", got.LastUsedAt)
	}

	rev, err := s.RevokeAPIToken(ctx, tok.ID)
	must(t, err)
	if rev.RevokedAt == nil || rev.Active(time.Now()) {
		t.Fatalf("revoked token still active: %+v", rev)
	}
	first := *rev.RevokedAt
	rev, err = s.RevokeAPIToken(ctx, tok.ID)
	must(t, err)
	if !rev.RevokedAt.Equal(first) {
		t.Fatal("second revoke moved the revocation time")
	}
	_, err = s.RevokeAPIToken(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
	list, err := s.ListAPITokens(ctx)
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("ListAPITokens = %d tokens", len(list))
	}
}

func testKeypairsAndSettings(t *testing.T, s *storage.Store) {
	_, _, err := s.CreateKeypairIfAbsent(ctx, &mdmd.Keypair{Name: "ca"})
	wantCode(t, err, mdmd.EInvalid)
	// Concurrent creators: exactly one wins, all get the winner's key pair.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners, certs := 0, map[string]bool{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			kp, created, err := s.CreateKeypairIfAbsent(ctx, &mdmd.Keypair{Name: "ca", CertPEM: fmt.Sprintf("cert%d", i), KeySealed: []byte{byte(i + 1)}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if created {
				winners++
			}
			certs[kp.CertPEM] = true
		}(i)
	}
	wg.Wait()
	if winners != 1 || len(certs) != 1 {
		t.Fatalf("winners = %d, distinct certs seen = %d; want 1 and 1", winners, len(certs))
	}
	_, err = s.GetKeypair(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)

	_, err = s.GetSetting(ctx, "k")
	wantCode(t, err, mdmd.ENotFound)
	v, created, err := s.CreateSettingIfAbsent(ctx, "k", "one")
	must(t, err)
	if !created || v != "one" {
		t.Fatalf("CreateSettingIfAbsent = %q, %v", v, created)
	}
	v, created, err = s.CreateSettingIfAbsent(ctx, "k", "two")
	must(t, err)
	if created || v != "one" {
		t.Fatalf("second CreateSettingIfAbsent = %q, %v", v, created)
	}
	must(t, s.PutSetting(ctx, "k", "three"))
	if v, _ := s.GetSetting(ctx, "k"); v != "three" {
		t.Fatalf("PutSetting did not replace: %q", v)
	}
}

func testTransactions(t *testing.T, s *storage.Store) {
	boom := errors.New("boom")
	err := s.Tx(ctx, func(tx *storage.Store) error {
		must(t, tx.CreateDevice(ctx, iosDevice("T1")))
		must(t, tx.CreateGroup(ctx, &mdmd.Group{Name: "tx"}))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx error = %v, want boom", err)
	}
	if _, err := s.GetDeviceByUDID(ctx, "T1"); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatalf("rolled-back device exists: %v", err)
	}
	if gs, _ := s.ListGroups(ctx); len(gs) != 0 {
		t.Fatalf("rolled-back group exists: %+v", gs)
	}
	must(t, s.Tx(ctx, func(tx *storage.Store) error {
		d := iosDevice("T2")
		if err := tx.CreateDevice(ctx, d); err != nil {
			return err
		}
		// Reads inside the transaction see its writes.
		_, err := tx.GetDevice(ctx, d.ID)
		return err
	}))
	if _, err := s.GetDeviceByUDID(ctx, "T2"); err != nil {
		t.Fatalf("committed device missing: %v", err)
	}
	// A failing statement inside a transaction rolls back the earlier ones.
	err = s.Tx(ctx, func(tx *storage.Store) error {
		must(t, tx.CreateDevice(ctx, iosDevice("T3")))
		return tx.CreateDevice(ctx, iosDevice("T2"))
	})
	wantCode(t, err, mdmd.EConflict)
	if _, err := s.GetDeviceByUDID(ctx, "T3"); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatalf("device of a failed transaction exists: %v", err)
	}
}

func testJobs(t *testing.T, s *storage.Store) {
	_, err := s.EnqueueJob(ctx, &mdmd.Job{})
	wantCode(t, err, mdmd.EInvalid)
	later := &mdmd.Job{Kind: "k", RunAt: time.Now().Add(time.Hour)}
	created, err := s.EnqueueJob(ctx, later)
	must(t, err)
	if !created || later.MaxAttempts != 5 {
		t.Fatalf("EnqueueJob created=%v max=%d", created, later.MaxAttempts)
	}
	key := "prune@2026-11-22T07"
	j := &mdmd.Job{Kind: "k", UniqueKey: &key, Payload: []byte(`{"a":1}`), MaxAttempts: 2}
	created, err = s.EnqueueJob(ctx, j)
	must(t, err)
	if !created {
		t.Fatal("unique job not created")
	}
	created, err = s.EnqueueJob(ctx, &mdmd.Job{Kind: "k", UniqueKey: &key})
	must(t, err)
	if created {
		t.Fatal("duplicate unique key created a second job")
	}
	must(t, func() error { _, err := s.EnqueueJob(ctx, &mdmd.Job{Kind: "other"}); return err }())

	_, err = s.ClaimJobs(ctx, "", []string{"k"}, 1, time.Minute)
	wantCode(t, err, mdmd.EInvalid)
	got, err := s.ClaimJobs(ctx, "w1", []string{"k"}, 10, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].ID != j.ID || got[0].Status != mdmd.JobRunning || got[0].Attempts != 1 ||
		got[0].LeaseOwner != "w1" || string(got[0].Payload) != `{"a":1}` || got[0].LeaseUntil == nil {
		t.Fatalf("ClaimJobs = %+v, want the due unique job", got)
	}
	if again, _ := s.ClaimJobs(ctx, "w2", []string{"k"}, 10, time.Minute); len(again) != 0 {
		t.Fatalf("leased job claimed twice: %+v", again)
	}

	wantCode(t, s.CompleteJob(ctx, j.ID, "w2"), mdmd.ELeaseLost)
	failed, err := s.FailJob(ctx, j.ID, "w1", "temporary", time.Now().Add(-time.Second))
	must(t, err)
	if failed.Status != mdmd.JobQueued || failed.LastError != "temporary" || failed.LeaseOwner != "" {
		t.Fatalf("FailJob = %+v", failed)
	}
	got, err = s.ClaimJobs(ctx, "w3", []string{"k"}, 10, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("retry claim = %+v", got)
	}
	dead, err := s.FailJob(ctx, j.ID, "w3", "permanent", time.Now())
	must(t, err)
	if dead.Status != mdmd.JobDead || dead.DoneAt == nil {
		t.Fatalf("job past max attempts = %+v, want dead", dead)
	}
	_, err = s.FailJob(ctx, j.ID, "w3", "again", time.Now())
	wantCode(t, err, mdmd.ELeaseLost)

	other, err := s.ClaimJobs(ctx, "w4", []string{"other"}, 10, time.Minute)
	must(t, err)
	if len(other) != 1 {
		t.Fatalf("claim other = %d jobs", len(other))
	}
	must(t, s.CompleteJob(ctx, other[0].ID, "w4"))
	wantCode(t, s.CompleteJob(ctx, other[0].ID, "w4"), mdmd.ELeaseLost)
	done, _ := s.GetJob(ctx, other[0].ID)
	if done.Status != mdmd.JobDone || done.DoneAt == nil {
		t.Fatalf("completed job = %+v", done)
	}
	counts, err := s.CountJobs(ctx)
	must(t, err)
	if counts[mdmd.JobDone] != 1 || counts[mdmd.JobDead] != 1 || counts[mdmd.JobQueued] != 1 {
		t.Fatalf("CountJobs = %v", counts)
	}
	n, err := s.PruneJobs(ctx, time.Now().Add(time.Minute))
	must(t, err)
	if n != 2 {
		t.Fatalf("PruneJobs removed %d, want 2", n)
	}
	if _, err := s.GetJob(ctx, later.ID); err != nil {
		t.Fatalf("pending job pruned: %v", err)
	}
}

func testJobLeases(t *testing.T, s *storage.Store) {
	j := &mdmd.Job{Kind: "lease", MaxAttempts: 2}
	_, err := s.EnqueueJob(ctx, j)
	must(t, err)
	got, err := s.ClaimJobs(ctx, "dying", []string{"lease"}, 1, 10*time.Millisecond)
	must(t, err)
	if len(got) != 1 {
		t.Fatal("not claimed")
	}
	time.Sleep(30 * time.Millisecond)
	// The lease ran out: another worker takes over, and the first is fenced off.
	got, err = s.ClaimJobs(ctx, "rescuer", []string{"lease"}, 1, 10*time.Millisecond)
	must(t, err)
	if len(got) != 1 || got[0].Attempts != 2 || got[0].LeaseOwner != "rescuer" {
		t.Fatalf("expired lease not reclaimed: %+v", got)
	}
	wantCode(t, s.CompleteJob(ctx, j.ID, "dying"), mdmd.ELeaseLost)
	_, err = s.FailJob(ctx, j.ID, "dying", "late failure", time.Now())
	wantCode(t, err, mdmd.ELeaseLost)
	if cur, _ := s.GetJob(ctx, j.ID); cur.LeaseOwner != "rescuer" || cur.Status != mdmd.JobRunning {
		t.Fatalf("the fenced-off worker changed the job: %+v", cur)
	}
	time.Sleep(30 * time.Millisecond)
	// The final attempt's lease ran out too: the job is dead, not retried forever.
	got, err = s.ClaimJobs(ctx, "third", []string{"lease"}, 1, time.Minute)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("job past its attempts claimed again: %+v", got)
	}
	stored, _ := s.GetJob(ctx, j.ID)
	if stored.Status != mdmd.JobDead {
		t.Fatalf("job status = %s, want dead", stored.Status)
	}
}

func testJobConcurrentClaims(t *testing.T, s *storage.Store) {
	const jobs, workers = 60, 6
	for i := 0; i < jobs; i++ {
		_, err := s.EnqueueJob(ctx, &mdmd.Job{Kind: "race"})
		must(t, err)
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for round := 0; ; round++ {
				owner := fmt.Sprintf("w%d-%d", w, round)
				got, err := s.ClaimJobs(ctx, owner, []string{"race"}, 3, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, j := range got {
					mu.Lock()
					claimed[j.ID]++
					mu.Unlock()
					if err := s.CompleteJob(ctx, j.ID, owner); err != nil {
						t.Error(err)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if len(claimed) != jobs {
		t.Fatalf("%d distinct jobs claimed, want %d", len(claimed), jobs)
	}
	var dup []string
	for id, n := range claimed {
		if n != 1 {
			dup = append(dup, id)
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Fatalf("jobs claimed more than once: %v", dup)
	}
	counts, _ := s.CountJobs(ctx)
	if counts[mdmd.JobDone] != jobs {
		t.Fatalf("done jobs = %d, want %d", counts[mdmd.JobDone], jobs)
	}
}
