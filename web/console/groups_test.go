package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// pageClient serves a console on one backend, for page tests: sessions of any
// role, and requests as them.
type pageClient struct {
	t  *testing.T
	st *storage.Store
	r  chi.Router
	c  *Console
}

func newPages(t *testing.T, be storagetest.Backend, opts func(st *storage.Store) Options) *pageClient {
	t.Helper()
	st := storagetest.Open(t, be.URL, storage.Options{})
	o := opts(st)
	o.Store, o.PublicURL = st, "http://127.0.0.1"
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	c.Register(r)
	return &pageClient{t: t, st: st, r: r, c: c}
}

// session signs a user of the role in and returns the session ID.
func (p *pageClient) session(role mdmd.Role) string {
	p.t.Helper()
	sid, _ := signIn(p.t, p.st, role)
	return sid
}

// do sends a request in the session (see send).
func (p *pageClient) do(sid, method, path string, form url.Values) (int, string) {
	return send(p.r, sid, method, path, form, nil)
}

// audited returns the details of the audit events of an action.
func (p *pageClient) audited(action string) []map[string]any {
	p.t.Helper()
	es, _, err := p.st.ListAudit(context.Background(), mdmd.AuditFilter{Action: action, Limit: 100})
	if err != nil {
		p.t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range es {
		d := map[string]any{}
		_ = json.Unmarshal(e.Details, &d)
		out = append(out, d)
	}
	return out
}

// membershipLog records what the membership observer is told.
type membershipLog struct{ calls []string }

func (m *membershipLog) MembershipChanged(_ context.Context, groupID string, ids []string) {
	m.calls = append(m.calls, groupID+":"+strings.Join(slices.Sorted(slices.Values(ids)), ","))
}

// The group page on every backend: members are listed in pages with
// links to their devices; devices are added by serial number, name or ID,
// several at once, all or none (an unknown or ambiguous one is named and
// nothing is added); every change goes through the membership observer
// and marks the devices for compliance evaluation, as the API's does;
// viewers and helpdesk see the members but no forms and get 403.
func TestGroupPage(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			obs := &membershipLog{}
			p := newPages(t, be, func(st *storage.Store) Options { return Options{Groups: ObserveGroups(st, obs)} })
			st := p.st
			admin, viewer, helpdesk := p.session(mdmd.RoleAdmin), p.session(mdmd.RoleViewer), p.session(mdmd.RoleHelpdesk)
			g := &mdmd.Group{Name: "sales"}
			if err := st.CreateGroup(ctx, g); err != nil {
				t.Fatal(err)
			}
			var devs []*mdmd.Device
			for i := range 53 {
				udid := fmt.Sprintf("UDID-%02d", i)
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: fmt.Sprintf("Phone %02d", i),
					SerialNumber: fmt.Sprintf("SN%02d", i), Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
				if i >= 51 {
					d.Name = "Twin" // two devices share a name
				}
				if err := st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				devs = append(devs, d)
			}
			members := func() []string {
				ds, _, err := st.ConsoleListDevices(ctx, mdmd.ConsoleDeviceFilter{DeviceFilter: mdmd.DeviceFilter{GroupID: g.ID, Limit: 1000}, Sort: mdmd.SortEnrolled})
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, d := range ds {
					ids = append(ids, d.ID)
				}
				return ids
			}
			// dirty claims the devices marked for compliance evaluation.
			dirty := func() []string {
				marks, err := st.ClaimDirtyDevices(ctx, 1000, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.ClearDirtyDevices(ctx, marks); err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, m := range marks {
					ids = append(ids, m.DeviceID)
				}
				return slices.Sorted(slices.Values(ids))
			}
			dirty() // whatever creating the devices marked
			path := "/groups/" + g.ID

			if _, page := p.do(admin, "GET", "/groups", nil); !strings.Contains(page, `href="/groups/`+g.ID+`"`) {
				t.Error("the groups list does not link to the group's page")
			}

			// Refused lists add nothing and tell the observer nothing.
			for _, tc := range []struct {
				name, devices string
				want          []string
			}{
				{"unknown", "SN00\nnope, also-nope", []string{"nothing was added", "“nope”, “also-nope”"}},
				{"ambiguous", "SN00, twin", []string{"“twin” names several devices"}},
				{"empty", " , \n", []string{"give at least one"}},
			} {
				status, page := p.do(admin, "POST", path+"/members", url.Values{"devices": {tc.devices}})
				if status != http.StatusBadRequest || !strings.Contains(page, `id="members-error"`) {
					t.Errorf("%s: %d", tc.name, status)
				}
				for _, w := range tc.want {
					if !strings.Contains(page, w) {
						t.Errorf("%s: the page does not say %q", tc.name, w)
					}
				}
				if tc.devices != " , \n" && !strings.Contains(page, tc.devices[:4]) {
					t.Errorf("%s: the refused list is not kept in the form", tc.name)
				}
			}
			if m := members(); len(m) != 0 || len(obs.calls) != 0 || len(dirty()) != 0 {
				t.Fatalf("refused forms changed something: members %v, observer %v", m, obs.calls)
			}

			// By serial number (any case), name and ID, one a line and
			// comma separated, with a repeat.
			refs := []string{"sn00", "Phone 01", devs[2].ID}
			for i := 3; i < 51; i++ {
				refs = append(refs, devs[i].SerialNumber)
			}
			status, _ := p.do(admin, "POST", path+"/members", url.Values{"devices": {strings.Join(refs[:3], "\n") + "\r\n" + strings.Join(refs[3:], ", ") + ",SN00"}})
			if status != http.StatusSeeOther {
				t.Fatalf("add: %d", status)
			}
			var want []string
			for _, d := range devs[:51] {
				want = append(want, d.ID)
			}
			want = slices.Sorted(slices.Values(want))
			if got := slices.Sorted(slices.Values(members())); !slices.Equal(got, want) {
				t.Fatalf("members after adding 51: %d", len(got))
			}
			if got := dirty(); !slices.Equal(got, want) {
				t.Errorf("%d devices marked for compliance evaluation, want the 51 added", len(got))
			}
			if len(obs.calls) != 1 || obs.calls[0] != g.ID+":"+strings.Join(want, ",") {
				t.Errorf("the observer heard %d calls, want one with the 51 devices", len(obs.calls))
			}
			if a := p.audited("group.members.add"); len(a) != 1 || a[0]["via"] != "console" || len(a[0]["device_ids"].([]any)) != 51 {
				t.Errorf("audit of the addition: %v", a)
			}

			// Pages of 50, with links to the devices.
			status, page := p.do(viewer, "GET", path, nil)
			if status != 200 || !strings.Contains(page, `href="/devices/`+devs[0].ID+`"`) || strings.Count(page, `href="/devices/`) != 50 {
				t.Fatalf("first page: %d, %d device links", status, strings.Count(page, `href="/devices/`))
			}
			next := path + "?cursor=" + devs[49].ID
			if !strings.Contains(page, `href="`+next+`"`) {
				t.Fatal("no link to the next page")
			}
			if _, page := p.do(viewer, "GET", next, nil); strings.Count(page, `href="/devices/`) != 1 || !strings.Contains(page, devs[50].ID) {
				t.Error("the second page does not hold the 51st device")
			}
			// Viewers and helpdesk: no forms, and 403 on every change.
			for _, sid := range []string{viewer, helpdesk} {
				if _, page := p.do(sid, "GET", path, nil); strings.Contains(page, `action="/groups/`) || strings.Contains(page, "Add devices") {
					t.Errorf("%s sees forms that change the group", sid)
				}
				if status, _ := p.do(sid, "POST", path+"/members", url.Values{"devices": {"SN52"}}); status != http.StatusForbidden {
					t.Errorf("%s adding: %d", sid, status)
				}
				if status, _ := p.do(sid, "POST", path+"/members/"+devs[0].ID+"/remove", url.Values{}); status != http.StatusForbidden {
					t.Errorf("%s removing: %d", sid, status)
				}
			}
			// The admin sees both forms; without the CSRF token nothing happens.
			if _, page := p.do(admin, "GET", path, nil); !strings.Contains(page, `action="`+path+`/members"`) ||
				!strings.Contains(page, `action="`+path+`/members/`+devs[0].ID+`/remove"`) || !strings.Contains(page, `for="m-devices"`) {
				t.Error("the admin's group page lacks the add or remove forms")
			}
			if status, _ := p.do(admin, "POST", path+"/members", url.Values{"devices": {"SN52"}, "csrf": {"-"}}); status != http.StatusForbidden {
				t.Errorf("adding without CSRF: %d", status)
			}
			if status, _ := p.do(admin, "POST", path+"/members/"+devs[0].ID+"/remove", url.Values{"csrf": {"wrong"}}); status != http.StatusForbidden {
				t.Errorf("removing with a wrong CSRF token: %d", status)
			}
			if len(members()) != 51 || len(obs.calls) != 1 {
				t.Fatal("a refused request changed the members")
			}

			// Remove one.
			if status, _ := p.do(admin, "POST", path+"/members/"+devs[0].ID+"/remove", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("remove: %d", status)
			}
			if slices.Contains(members(), devs[0].ID) || len(members()) != 50 {
				t.Error("the removed device is still a member")
			}
			if got := dirty(); !slices.Equal(got, []string{devs[0].ID}) {
				t.Errorf("marked after removal: %v", got)
			}
			if len(obs.calls) != 2 || obs.calls[1] != g.ID+":"+devs[0].ID {
				t.Errorf("the observer heard %v", obs.calls)
			}
			if a := p.audited("group.members.remove"); len(a) != 1 || a[0]["via"] != "console" {
				t.Errorf("audit of the removal: %v", a)
			}
			if status, _ := p.do(admin, "GET", "/groups/nope", nil); status != http.StatusNotFound {
				t.Errorf("an unknown group: %d", status)
			}
			if status, _ := p.do(admin, "POST", "/groups/nope/members", url.Values{"devices": {"SN01"}}); status != http.StatusNotFound {
				t.Errorf("adding to an unknown group: %d", status)
			}
		})
	}
}
