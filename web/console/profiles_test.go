package console

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/profiles"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// pageRig is a console on one backend with a signed-in session per role.
type pageRig struct {
	t        *testing.T
	st       *storage.Store
	box      *secret.Box
	router   http.Handler
	sessions map[mdmd.Role]string
}

func newPageRig(t *testing.T, dbURL string) *pageRig {
	t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &pageRig{t: t, st: storagetest.Open(t, dbURL, storage.Options{}), box: box, sessions: map[mdmd.Role]string{}}
}

// start builds the console with o (Store, Audit and PublicURL filled in)
// and signs in a user of every role.
func (g *pageRig) start(o Options) {
	g.t.Helper()
	o.Store, o.Audit, o.PublicURL = g.st, g.st, "http://127.0.0.1"
	c, err := New(o)
	if err != nil {
		g.t.Fatal(err)
	}
	r := chi.NewRouter()
	c.Register(r)
	g.router = r
	for _, role := range []mdmd.Role{mdmd.RoleAdmin, mdmd.RoleViewer, mdmd.RoleHelpdesk} {
		g.sessions[role], _ = signIn(g.t, g.st, role)
	}
}

// do sends a request as role: a form (with the session's CSRF token
// unless it has csrf "-") or, with file set, a multipart form.
func (g *pageRig) do(role mdmd.Role, method, path string, form url.Values, file []byte) (int, string) {
	return send(g.router, g.sessions[role], method, path, form, file)
}

// audited reports whether the log has a console entry of the action on the target.
func (g *pageRig) audited(action, target string) bool {
	g.t.Helper()
	events, _, err := g.st.ListAudit(context.Background(), mdmd.AuditFilter{Action: action, TargetID: target, Limit: 10})
	if err != nil {
		g.t.Fatal(err)
	}
	for _, e := range events {
		var d map[string]any
		if json.Unmarshal(e.Details, &d) == nil && d["via"] == "console" && e.Outcome == mdmd.OutcomeSuccess {
			return true
		}
	}
	return false
}

// reconciles records the devices the profile service queued for reconciliation.
type reconciles struct {
	mu      sync.Mutex
	devices []string
}

func (q *reconciles) Enqueue(_ context.Context, j *mdmd.Job) (bool, error) {
	var p profiles.ReconcilePayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.devices = append(q.devices, p.DeviceIDs...)
	return true, nil
}

// take returns the devices queued since the last call.
func (q *reconciles) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.devices
	q.devices = nil
	return out
}

type noCommands struct{}

func (noCommands) EnqueueApple(context.Context, string, string, bool, ...commands.AppleCommand) ([]*mdmd.Command, error) {
	return nil, nil
}
func (noCommands) Push(context.Context, ...string) error { return nil }

// The profile pages on every backend: each kind is created through its
// form and stored as the API would store it; bad input is refused next
// to its field and stores nothing; assigning to a group and unassigning
// queue reconciliation of the group's devices; editing makes a new
// version; deleting removes it; viewers and helpdesk see the pages
// without any changing form and get 403 from every changing route.
func TestProfilePages(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			g := newPageRig(t, be.URL)
			jobs := &reconciles{}
			svc := profiles.NewService(g.st, noCommands{}, jobs, nil, g.box, "Acme", slog.New(slog.DiscardHandler))
			g.start(Options{Profiles: svc})
			const admin, viewer, helpdesk = mdmd.RoleAdmin, mdmd.RoleViewer, mdmd.RoleHelpdesk

			custom, _, err := profiles.Build(mdmd.ProfileWiFi, "com.acme.uploaded", "Uploaded", "Acme", []byte(`{"ssid":"Up","password":"uploaded-secret"}`))
			if err != nil {
				t.Fatal(err)
			}
			created := map[mdmd.ProfileKind]string{}
			for _, tc := range []struct {
				kind     mdmd.ProfileKind
				form     url.Values
				file     []byte
				settings string // a fragment of the stored settings
			}{
				{mdmd.ProfilePasscode, url.Values{"name": {"Baseline"}, "min_length": {"8"}, "require_alphanumeric": {"on"}}, nil, `"min_length":8,"require_alphanumeric":true,"max_inactivity_minutes":5`},
				{mdmd.ProfileRestrictions, url.Values{"name": {"No camera"}, "allow_camera": {"false"}, "allow_cloud_backup": {""}}, nil, `{"allow_camera":false}`},
				{mdmd.ProfileWiFi, url.Values{"name": {"Office Wi-Fi"}, "ssid": {"Acme"}, "security": {"WPA3"}, "password": {"correct horse"}, "auto_join": {"false"}}, nil, `"ssid":"Acme","security":"WPA3"`},
				{mdmd.ProfileVPN, url.Values{"name": {"Corp VPN"}, "vpn_name": {"Corp"}, "server": {"vpn.example.com"}, "remote_identifier": {"vpn.example.com"},
					"local_identifier": {"phone"}, "shared_secret": {"s3cret-s3cret"}, "safari_domains": {"intranet.example.com\r\nwiki.example.com"}}, nil,
					`"name":"Corp","server":"vpn.example.com"`},
				{mdmd.ProfileCustom, url.Values{"name": {"Uploaded"}}, custom, ""},
			} {
				tc.form.Set("kind", string(tc.kind))
				status, _ := g.do(admin, "POST", "/profiles", tc.form, tc.file)
				if status != http.StatusSeeOther {
					t.Fatalf("create %s: %d", tc.kind, status)
				}
				ps, _ := g.st.ListProfiles(ctx)
				var p *mdmd.Profile
				for i := range ps {
					if ps[i].Kind == tc.kind {
						p = &ps[i]
					}
				}
				if p == nil || p.Name != tc.form.Get("name") || !strings.Contains(string(p.Settings), tc.settings) || p.CreatedBy != "u-admin" {
					t.Fatalf("stored %s profile: %+v", tc.kind, p)
				}
				if !g.audited("profile.create", p.ID) {
					t.Errorf("creating a %s profile was not audited", tc.kind)
				}
				created[tc.kind] = p.ID
			}
			wifi := created[mdmd.ProfileWiFi]
			if p, _ := g.st.GetProfile(ctx, wifi); bytes.Contains(p.Payload, []byte("correct horse")) || strings.Contains(string(p.Settings), "correct horse") {
				t.Error("the Wi-Fi password is stored readable")
			}
			if status, body := g.do(admin, "GET", "/profiles/"+wifi+"/mobileconfig", nil, nil); status != 200 || !strings.Contains(body, "correct horse") ||
				!strings.Contains(body, "Office Wi-Fi") {
				t.Errorf("download: %d", status)
			}
			if p, _ := g.st.GetProfile(ctx, created[mdmd.ProfileCustom]); p.Identifier != "com.acme.uploaded" {
				t.Errorf("uploaded profile's identifier = %q", p.Identifier)
			}

			// Bad input: the service's message next to the field, nothing stored.
			for _, tc := range []struct {
				name   string
				form   url.Values
				file   []byte
				status int
				id     string // the element that must carry the error
				msg    string
			}{
				{"short passcode", url.Values{"kind": {"passcode"}, "name": {"P"}, "min_length": {"1"}}, nil, 400, "new-passcode-min_length-error", "must be from 4 to 16"},
				{"not a number", url.Values{"kind": {"passcode"}, "name": {"P"}, "max_failed_attempts": {"ten"}}, nil, 400, "new-passcode-max_failed_attempts-error", "whole number"},
				{"no name", url.Values{"kind": {"passcode"}, "name": {" "}}, nil, 400, "new-passcode-name-error", "required"},
				{"no restriction", url.Values{"kind": {"restrictions"}, "name": {"R"}}, nil, 400, "new-restrictions-error", "set at least one restriction"},
				{"short Wi-Fi password", url.Values{"kind": {"wifi"}, "name": {"W"}, "ssid": {"x"}, "password": {"short"}}, nil, 400, "new-wifi-password-error", "must be 8 to 63 characters"},
				{"open network with a password", url.Values{"kind": {"wifi"}, "name": {"W"}, "ssid": {"x"}, "security": {"None"}, "password": {"password1"}}, nil, 400, "new-wifi-password-error", "an open network has no password"},
				{"VPN without a server", url.Values{"kind": {"vpn"}, "name": {"V"}, "vpn_name": {"V"}, "shared_secret": {"s3cret-s3cret"}}, nil, 400, "new-vpn-error", "server"},
				{"not a profile", url.Values{"kind": {"custom"}, "name": {"C"}}, []byte("<html/>"), 400, "new-custom-mobileconfig-error", "not a property list"},
				{"no file", url.Values{"kind": {"custom"}, "name": {"C"}}, nil, 400, "new-custom-mobileconfig-error", "must be 1 byte"},
				{"identifier taken", url.Values{"kind": {"custom"}, "name": {"again"}}, custom, 409, "new-custom-error", "already exists"},
				{"unknown kind", url.Values{"kind": {"firewall"}, "name": {"F"}}, nil, 400, "", "profile kind"},
				{"no CSRF token", url.Values{"kind": {"passcode"}, "name": {"P"}, "csrf": {"-"}}, nil, 403, "", "security token"},
				{"an upload without CSRF token", url.Values{"kind": {"custom"}, "name": {"C"}, "csrf": {"-"}}, custom, 403, "", "security token"},
			} {
				status, body := g.do(admin, "POST", "/profiles", tc.form, tc.file)
				if status != tc.status || !strings.Contains(html.UnescapeString(body), tc.msg) || (tc.id != "" && !strings.Contains(body, `id="`+tc.id+`"`)) {
					t.Errorf("%s: %d, want %d with %q at #%s", tc.name, status, tc.status, tc.msg, tc.id)
				}
				if tc.id != "" && tc.form.Get("password") != "" && strings.Contains(body, tc.form.Get("password")) {
					t.Errorf("%s: the password is echoed", tc.name)
				}
			}
			if ps, _ := g.st.ListProfiles(ctx); len(ps) != len(created) {
				t.Fatalf("%d profiles after refused forms, want %d", len(ps), len(created))
			}

			// Assign the passcode profile to a group of two devices.
			passcode := created[mdmd.ProfilePasscode]
			grp := &mdmd.Group{Name: "sales"}
			if err := g.st.CreateGroup(ctx, grp); err != nil {
				t.Fatal(err)
			}
			var devs []string
			for _, udid := range []string{"P1", "P2"} {
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "iPhone " + udid, SerialNumber: "SN" + udid,
					Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
				if err := g.st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				devs = append(devs, d.ID)
			}
			if err := g.st.AddGroupMembers(ctx, grp.ID, devs); err != nil {
				t.Fatal(err)
			}
			jobs.take()
			if status, body := g.do(admin, "POST", "/profiles/"+passcode+"/assignments", url.Values{"target_id": {"missing"}}, nil); status != 404 ||
				!strings.Contains(body, `id="assign-error"`) {
				t.Errorf("assign to a missing group: %d", status)
			}
			if status, _ := g.do(admin, "POST", "/profiles/"+passcode+"/assignments", url.Values{"target_type": {"group"}, "target_id": {grp.ID}}, nil); status != http.StatusSeeOther {
				t.Fatalf("assign: %d", status)
			}
			if as, _ := g.st.ListAssignments(ctx, passcode); len(as) != 1 || as[0].TargetType != mdmd.TargetGroup || as[0].TargetID != grp.ID {
				t.Fatalf("assignments = %+v", as)
			}
			if got := jobs.take(); len(got) != 2 {
				t.Errorf("assigning reconciled %v, want the group's two devices", got)
			}
			if !g.audited("profile.assign", passcode) {
				t.Error("the assignment was not audited")
			}
			pid := passcode
			if err := g.st.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: devs[0], Identifier: profiles.Identifier(passcode), ProfileID: &pid,
				Version: 1, State: mdmd.ProfileInstalled, CommandID: "c1"}); err != nil {
				t.Fatal(err)
			}

			// What a viewer sees, and what nobody but a profile manager may do.
			for _, role := range []mdmd.Role{viewer, helpdesk} {
				status, list := g.do(role, "GET", "/profiles", nil, nil)
				if status != 200 || !strings.Contains(list, "Baseline") || !strings.Contains(list, "sales") || !strings.Contains(list, "1 installed") ||
					strings.Contains(list, `action="/profiles"`) {
					t.Errorf("%s's profile list: %d", role, status)
				}
				status, page := g.do(role, "GET", "/profiles/"+passcode, nil, nil)
				if status != 200 || !strings.Contains(page, "iPhone P1") || !strings.Contains(page, "installed") || strings.Contains(page, "<form method=\"post\" action=\"/profiles/") ||
					strings.Contains(page, "mobileconfig\"") {
					t.Errorf("%s's profile page: %d", role, status)
				}
				for _, tc := range []struct {
					method, path string
					form         url.Values
				}{
					{"POST", "/profiles", url.Values{"kind": {"passcode"}, "name": {"x"}}},
					{"POST", "/profiles/" + passcode, url.Values{"name": {"x"}}},
					{"POST", "/profiles/" + passcode + "/delete", url.Values{}},
					{"POST", "/profiles/" + passcode + "/assignments", url.Values{"target_id": {grp.ID}}},
					{"POST", "/profiles/" + passcode + "/assignments/delete", url.Values{"target_type": {"group"}, "target_id": {grp.ID}}},
					{"GET", "/profiles/" + wifi + "/mobileconfig", nil},
				} {
					if status, _ := g.do(role, tc.method, tc.path, tc.form, nil); status != http.StatusForbidden {
						t.Errorf("%s %s %s: %d", role, tc.method, tc.path, status)
					}
				}
			}
			if status, page := g.do(admin, "GET", "/profiles/"+passcode, nil, nil); status != 200 || !strings.Contains(page, `action="/profiles/`+passcode+`/delete"`) ||
				!strings.Contains(page, "Unassign") || !strings.Contains(page, `value="8"`) {
				t.Errorf("admin's profile page: %d", status)
			}

			// Edit: a new version; a bad value keeps the old one.
			if status, body := g.do(admin, "POST", "/profiles/"+passcode, url.Values{"name": {"Baseline"}, "min_length": {"99"}}, nil); status != 400 ||
				!strings.Contains(body, `id="edit-min_length-error"`) {
				t.Errorf("a bad edit: %d", status)
			}
			if status, body := g.do(admin, "POST", "/profiles/"+wifi, url.Values{"name": {"Office"}, "ssid": {"Acme"}}, nil); status != 400 ||
				!strings.Contains(body, `id="edit-password-error"`) {
				t.Errorf("a Wi-Fi edit without its password: %d", status)
			}
			jobs.take()
			if status, _ := g.do(admin, "POST", "/profiles/"+passcode, url.Values{"name": {"Baseline v2"}, "min_length": {"10"}}, nil); status != http.StatusSeeOther {
				t.Fatalf("edit: %d", status)
			}
			if p, _ := g.st.GetProfile(ctx, passcode); p.Version != 2 || p.Name != "Baseline v2" || !strings.Contains(string(p.Settings), `"min_length":10`) {
				t.Errorf("after the edit: %+v", p)
			}
			if got := jobs.take(); len(got) != 2 || !g.audited("profile.update", passcode) {
				t.Errorf("the edit reconciled %v", got)
			}

			// Unassign, then delete.
			if status, _ := g.do(admin, "POST", "/profiles/"+passcode+"/assignments/delete", url.Values{"target_type": {"group"}, "target_id": {grp.ID}}, nil); status != http.StatusSeeOther {
				t.Fatalf("unassign: %d", status)
			}
			if as, _ := g.st.ListAssignments(ctx, passcode); len(as) != 0 || len(jobs.take()) != 2 || !g.audited("profile.unassign", passcode) {
				t.Errorf("after unassigning: %+v", as)
			}
			if status, _ := g.do(admin, "POST", "/profiles/"+passcode+"/delete", url.Values{"csrf": {"-"}}, nil); status != http.StatusForbidden {
				t.Errorf("delete without CSRF: %d", status)
			}
			if status, _ := g.do(admin, "POST", "/profiles/"+passcode+"/delete", url.Values{}, nil); status != http.StatusSeeOther {
				t.Fatalf("delete: %d", status)
			}
			if _, err := g.st.GetProfile(ctx, passcode); !mdmd.IsCode(err, mdmd.ENotFound) || !g.audited("profile.delete", passcode) {
				t.Errorf("after deleting: %v", err)
			}
			if got := jobs.take(); len(got) != 1 || got[0] != devs[0] {
				t.Errorf("deleting reconciled %v, want the device that has it", got)
			}
			if status, _ := g.do(admin, "GET", "/profiles/"+passcode, nil, nil); status != 404 {
				t.Errorf("a deleted profile's page: %d", status)
			}
		})
	}
}
