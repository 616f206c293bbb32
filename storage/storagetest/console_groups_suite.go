package storagetest

import (
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// consoleGroupsTests are the conformance tests of the store methods behind
// the console's group and compliance policy pages.
func consoleGroupsTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"ConsoleResolveDeviceRefs", testConsoleResolveDeviceRefs},
		{"ConsolePolicyAssignments", testConsolePolicyAssignments},
	}
}

// References match a device's ID exactly and its serial number or name
// ignoring case; a shared name matches every device that has it, an
// empty serial number (personal Android) matches nothing.
func testConsoleResolveDeviceRefs(t *testing.T, s *storage.Store) {
	a, b := iosDevice("R1"), iosDevice("R2")
	b.Name = "Shared name"
	c := androidDevice("R3")
	c.Name = "shared NAME"
	for _, d := range []*mdmd.Device{a, b, c} {
		must(t, s.CreateDevice(ctx, d))
	}
	got, err := s.ResolveDeviceRefs(ctx, []string{a.ID, "snr2", "shared name", "iphone r1", "", "nobody"})
	must(t, err)
	ids := func(ref string) []string {
		var out []string
		for _, d := range got[ref] {
			out = append(out, d.ID)
		}
		return out
	}
	for _, tc := range []struct {
		ref  string
		want []string
	}{
		{a.ID, []string{a.ID}},
		{"snr2", []string{b.ID}},
		{"shared name", []string{b.ID, c.ID}},
		{"iphone r1", []string{a.ID}},
		{"", nil},
		{"nobody", nil},
	} {
		if g := ids(tc.ref); len(g) != len(tc.want) || (len(g) > 0 && !sameSet(g, tc.want)) {
			t.Errorf("ref %q matched %v, want %v", tc.ref, g, tc.want)
		}
	}
	if _, ok := got["nobody"]; ok {
		t.Error("an unknown reference is present in the result")
	}
	if got, err := s.ResolveDeviceRefs(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("no references: %v, %v", got, err)
	}
	_, err = s.ResolveDeviceRefs(ctx, make([]string, mdmd.MaxPageSize+1))
	wantCode(t, err, mdmd.EInvalid)
}

func sameSet(a, b []string) bool {
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// Assignments list by policy, then priority, and follow assign, change of
// priority, unassign and the deletion of a policy.
func testConsolePolicyAssignments(t *testing.T, s *storage.Store) {
	list := func() []mdmd.CompliancePolicyGroup {
		as, err := s.ListCompliancePolicyAssignments(ctx)
		must(t, err)
		return as
	}
	if as := list(); len(as) != 0 {
		t.Fatalf("assignments before any: %+v", as)
	}
	p1 := &mdmd.CompliancePolicy{Name: "p1", Rules: []byte(`{}`)}
	p2 := &mdmd.CompliancePolicy{Name: "p2", Rules: []byte(`{}`)}
	must(t, s.CreateCompliancePolicy(ctx, p1))
	must(t, s.CreateCompliancePolicy(ctx, p2))
	g1, g2 := &mdmd.Group{Name: "assign-a"}, &mdmd.Group{Name: "assign-b"}
	must(t, s.CreateGroup(ctx, g1))
	must(t, s.CreateGroup(ctx, g2))
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: p1.ID, GroupID: g1.ID, Priority: 20}))
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: p1.ID, GroupID: g2.ID, Priority: 10}))
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: p2.ID, GroupID: g1.ID, Priority: 5}))
	as := list()
	if len(as) != 3 {
		t.Fatalf("assignments = %+v", as)
	}
	byPolicy := map[string][]mdmd.CompliancePolicyGroup{}
	for _, a := range as {
		byPolicy[a.PolicyID] = append(byPolicy[a.PolicyID], a)
	}
	if p := byPolicy[p1.ID]; len(p) != 2 || p[0].GroupID != g2.ID || p[0].Priority != 10 || p[1].GroupID != g1.ID {
		t.Errorf("p1's assignments are not by priority: %+v", p)
	}
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: p1.ID, GroupID: g1.ID, Priority: 1}))
	if p := list(); len(p) != 3 {
		t.Errorf("a change of priority added an assignment: %+v", p)
	}
	must(t, s.UnassignCompliancePolicy(ctx, p2.ID, g1.ID))
	must(t, s.DeleteCompliancePolicy(ctx, p1.ID))
	if as := list(); len(as) != 0 {
		t.Errorf("assignments after unassign and delete: %+v", as)
	}
}
