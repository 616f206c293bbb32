package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/fakeapns"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/web"
)

// fixture is a running server with a few devices, a group and a command.
type fixture struct {
	*testServer
	ios, android *mdmd.Device
	group        *mdmd.Group
	command      *mdmd.Command
}

func newFixture(t *testing.T, dbURL string) *fixture {
	t.Helper()
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL, "--max-body-bytes", "4096")
	f := &fixture{testServer: ts}
	st, ctx := ts.srv.Store(), context.Background()
	udid := "00008110-000A1C2E3F4D5E6F"
	f.ios = &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "Ana's iPhone", SerialNumber: "F2LX1234",
		Model: "iPhone15,2", OSVersion: "17.4", Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: "ana@example.com"}
	name := "enterprises/LC0abc/devices/3a9f"
	f.android = &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: &name, Name: "Pixel", Model: "Pixel 8",
		Ownership: mdmd.OwnershipPersonal, EnrollmentState: mdmd.EnrollmentUnenrolled, OwnerUser: "ben@example.com"}
	f.group = &mdmd.Group{Name: "finance"}
	f.command = &mdmd.Command{DeviceID: "", RequestType: "DeviceInformation", CreatedBy: "test"}
	for _, err := range []error{st.CreateDevice(ctx, f.ios), st.CreateDevice(ctx, f.android), st.CreateGroup(ctx, f.group)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.command.DeviceID = f.ios.ID
	if err := st.EnqueueCommand(ctx, f.command); err != nil {
		t.Fatal(err)
	}
	return f
}

// tokenFor mints a token of the role through the API.
func (f *fixture) tokenFor(t *testing.T, role mdmd.Role) string {
	t.Helper()
	var out struct{ Secret string }
	body := map[string]any{"name": "t-" + string(role), "role": role}
	if role == mdmd.RoleRelyingParty {
		body["audience"] = "https://idp.example.com"
	}
	f.mustDo(201, "POST", "/api/v1/tokens", f.Token, body).json(t, &out)
	return out.Secret
}

func (f *fixture) auditCount(t *testing.T, action string) int {
	t.Helper()
	evs, _, err := f.srv.Store().ListAudit(context.Background(), mdmd.AuditFilter{Action: action, Limit: mdmd.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func TestAPIAuthentication(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	st, ctx := f.srv.Store(), context.Background()
	expired, expiredHash := auth.NewToken()
	if err := st.CreateAPIToken(ctx, &mdmd.APIToken{Name: "old", Hash: expiredHash, Role: mdmd.RoleAdmin, ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	revoked := f.tokenFor(t, mdmd.RoleAdmin)
	f.mustDo(200, "GET", "/api/v1/me", revoked, nil)
	f.mustDo(200, "DELETE", "/api/v1/tokens/"+tokenID(t, f.testServer, f.Token, "t-admin"), f.Token, nil)

	tests := []struct{ name, header string }{
		{"no header", ""},
		{"wrong scheme", "Basic YWRtaW46YWRtaW4="},
		{"empty bearer", "Bearer "},
		{"unknown token", "Bearer mdmd_" + strings.Repeat("A", 43)},
		{"not an mdmd token", "Bearer eyJhbGciOiJub25lIn0.e30."},
		{"expired token", "Bearer " + expired},
		{"revoked token", "Bearer " + revoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/me", "/api/v1/devices", "/api/v1/tokens"} {
				req, _ := http.NewRequest("GET", f.URL+path, nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
					resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("%s: status %d, content type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
			}
			// The unauthenticated write changes nothing.
			r := f.do("POST", "/api/v1/groups", strings.TrimPrefix(tc.header, "Bearer "), map[string]string{"name": "intruders"})
			if r.Status != 401 || r.errCode(t) != mdmd.EUnauthenticated {
				t.Fatalf("POST without valid token = %d %s", r.Status, r.Body)
			}
		})
	}
	gs, _ := st.ListGroups(ctx)
	if len(gs) != 1 {
		t.Fatalf("unauthenticated requests created groups: %+v", gs)
	}
}

func TestAPIBadInputChangesNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.URL)
			st, ctx := f.srv.Store(), context.Background()
			dev := "/api/v1/devices/" + f.ios.ID
			big := `{"name":"` + strings.Repeat("x", 5000) + `"}`
			tests := []struct {
				name, method, path, body, contentType string
				status                                int
				code, mentions                        string
			}{
				{"malformed JSON", "PATCH", dev, `{"name": "x"`, "", 400, mdmd.EInvalid, "malformed JSON"},
				{"syntax error", "PATCH", dev, `{"name" "x"}`, "", 400, mdmd.EInvalid, "byte"},
				{"unknown field", "PATCH", dev, `{"name":"x","udid":"forged"}`, "", 400, mdmd.EInvalid, `"udid"`},
				{"wrong type", "PATCH", dev, `{"name":42}`, "", 400, mdmd.EInvalid, "name"},
				{"not an object", "PATCH", dev, `["name"]`, "", 400, mdmd.EInvalid, "object"},
				{"trailing data", "PATCH", dev, `{"name":"x"} {"name":"y"}`, "", 400, mdmd.EInvalid, "single JSON object"},
				{"empty body", "PATCH", dev, ``, "", 400, mdmd.EInvalid, "empty"},
				{"unknown enum", "PATCH", dev, `{"ownership":"shared"}`, "", 400, mdmd.EInvalid, "ownership"},
				{"wrong media type", "PATCH", dev, `{"name":"x"}`, "text/plain", 415, mdmd.EUnsupported, "application/json"},
				{"oversized body", "PATCH", dev, big, "", 413, mdmd.ETooLarge, "4096"},
				{"unknown role", "POST", "/api/v1/tokens", `{"name":"x","role":"root"}`, "", 400, mdmd.EInvalid, "role"},
				{"token lifetime", "POST", "/api/v1/tokens", `{"name":"x","role":"viewer","expires_in_days":5000}`, "", 400, mdmd.EInvalid, "expires_in_days"},
				{"bad group name", "POST", "/api/v1/groups", `{"name":"  "}`, "", 400, mdmd.EInvalid, "name"},
				{"duplicate group", "POST", "/api/v1/groups", `{"name":"finance"}`, "", 409, mdmd.EConflict, "exists"},
				{"unknown device in group", "POST", "/api/v1/groups/" + f.group.ID + "/members", `{"device_ids":["` + f.ios.ID + `","nope"]}`, "", 404, mdmd.ENotFound, "not exist"},
				{"bad filter", "GET", "/api/v1/devices?platform=windows", "", "", 400, mdmd.EInvalid, "platform"},
				{"bad limit", "GET", "/api/v1/devices?limit=-1", "", "", 400, mdmd.EInvalid, "limit"},
				{"bad audit time", "GET", "/api/v1/audit?since=yesterday", "", "", 400, mdmd.EInvalid, "since"},
				{"unknown device", "GET", "/api/v1/devices/nope", "", "", 404, mdmd.ENotFound, "device"},
				{"unknown route", "GET", "/api/v1/nope", "", "", 404, mdmd.ENotFound, "route"},
				{"enrolled device delete", "DELETE", dev, "", "", 409, mdmd.EConflict, "unenroll"},
				{"body on a route without one", "DELETE", "/api/v1/devices/" + f.android.ID, `{"force":true}`, "", 400, mdmd.EInvalid, "takes no request body"},
				{"chunked body on a route without one", "DELETE", "/api/v1/devices/" + f.android.ID, "chunked:" + big, "", 400, mdmd.EInvalid, "takes no request body"},
				{"chunked oversized JSON", "PATCH", dev, "chunked:" + big, "", 413, mdmd.ETooLarge, "4096"},
				{"wrong method", "PUT", dev, "", "", 405, mdmd.EMethod, "PUT"},
				{"wrong method on healthz", "POST", "/healthz", "", "", 405, mdmd.EMethod, "POST"},
			}
			before := f.auditCount(t, "")
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					var reqBody io.Reader = strings.NewReader(tc.body)
					if rest, ok := strings.CutPrefix(tc.body, "chunked:"); ok {
						reqBody = io.MultiReader(strings.NewReader(rest)) // no length: sent chunked
					}
					req, _ := http.NewRequest(tc.method, f.URL+tc.path, reqBody)
					req.Header.Set("Authorization", "Bearer "+f.Token)
					ct := tc.contentType
					if ct == "" {
						ct = "application/json"
					}
					req.Header.Set("Content-Type", ct)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					var body web.ErrorBody
					if err := decodeBody(resp, &body); err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != tc.status || body.Error.Code != tc.code || !strings.Contains(body.Error.Message, tc.mentions) {
						t.Fatalf("got %d %q %q; want %d %q mentioning %q", resp.StatusCode, body.Error.Code, body.Error.Message, tc.status, tc.code, tc.mentions)
					}
					if body.Error.RequestID == "" || body.Error.RequestID != resp.Header.Get("X-Request-Id") {
						t.Fatalf("error lacks the request ID: %+v", body)
					}
				})
			}
			d, _ := st.GetDevice(ctx, f.ios.ID)
			if d.Name != f.ios.Name || d.Ownership != f.ios.Ownership || *d.UDID != *f.ios.UDID || !d.UpdatedAt.Equal(f.ios.UpdatedAt) {
				t.Fatalf("bad input changed the device: %+v", d)
			}
			if gs, _ := st.DeviceGroups(ctx, f.ios.ID); len(gs) != 0 {
				t.Fatalf("failed member add left memberships: %+v", gs)
			}
			if gs, _ := st.ListGroups(ctx); len(gs) != 1 {
				t.Fatalf("groups = %+v", gs)
			}
			if _, err := st.GetDevice(ctx, f.android.ID); err != nil {
				t.Fatalf("a rejected DELETE removed the device: %v", err)
			}
			if toks, _ := st.ListAPITokens(ctx); len(toks) != 1 {
				t.Fatalf("tokens = %d, want only the bootstrap token", len(toks))
			}
			if after := f.auditCount(t, ""); after != before {
				t.Fatalf("rejected requests wrote %d audit events", after-before)
			}
		})
	}
}

// TestRoleRouteMatrix calls every admin route of the running server,
// modules included, with a token of every role: a role without the
// route's permission gets 403 (and an audit entry), a role with it never
// does. A route the table does not know fails the test.
// apiPermissions is what each admin API route must require ("" for any
// authenticated caller), written down apart from the routes' own
// declarations, so a route registered with the wrong permission fails the
// matrix instead of being checked against itself.
var apiPermissions = map[string]mdmd.Permission{
	"GET /api/v1/me":                                             "",
	"GET /api/v1/devices":                                        mdmd.PermDevicesRead,
	"GET /api/v1/devices/{id}":                                   mdmd.PermDevicesRead,
	"PATCH /api/v1/devices/{id}":                                 mdmd.PermDevicesWrite,
	"DELETE /api/v1/devices/{id}":                                mdmd.PermDevicesDelete,
	"GET /api/v1/devices/{id}/commands":                          mdmd.PermCommandsRead,
	"GET /api/v1/commands/{id}":                                  mdmd.PermCommandsRead,
	"POST /api/v1/commands/{id}/cancel":                          mdmd.PermDevicesWrite,
	"GET /api/v1/groups":                                         mdmd.PermDevicesRead,
	"POST /api/v1/groups":                                        mdmd.PermGroupsWrite,
	"GET /api/v1/groups/{id}":                                    mdmd.PermDevicesRead,
	"PATCH /api/v1/groups/{id}":                                  mdmd.PermGroupsWrite,
	"DELETE /api/v1/groups/{id}":                                 mdmd.PermGroupsWrite,
	"POST /api/v1/groups/{id}/members":                           mdmd.PermGroupsWrite,
	"DELETE /api/v1/groups/{id}/members":                         mdmd.PermGroupsWrite,
	"GET /api/v1/tokens":                                         mdmd.PermTokensManage,
	"POST /api/v1/tokens":                                        mdmd.PermTokensManage,
	"DELETE /api/v1/tokens/{id}":                                 mdmd.PermTokensManage,
	"GET /api/v1/audit":                                          mdmd.PermAuditRead,
	"POST /api/v1/enrollment-links":                              mdmd.PermEnrollManage,
	"GET /api/v1/enrollment-links":                               mdmd.PermEnrollManage,
	"DELETE /api/v1/enrollment-links/{id}":                       mdmd.PermEnrollManage,
	"GET /api/v1/enrollment-links/{id}/profile":                  mdmd.PermEnrollManage,
	"GET /api/v1/apple/push-certificate":                         mdmd.PermSettingsManage,
	"PUT /api/v1/apple/push-certificate":                         mdmd.PermSettingsManage,
	"POST /api/v1/devices/{id}/actions/query":                    mdmd.PermCommandsQuery,
	"POST /api/v1/groups/{id}/actions/query":                     mdmd.PermCommandsQuery,
	"POST /api/v1/groups/{id}/actions/lock":                      mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/lock":                     mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/clear-passcode":           mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/retire":                   mdmd.PermDevicesDelete,
	"POST /api/v1/devices/{id}/actions/wipe":                     mdmd.PermCommandsWipe,
	"POST /api/v1/groups/{id}/actions/wipe":                      mdmd.PermCommandsWipe,
	"GET /api/v1/approvals":                                      mdmd.PermCommandsWipe,
	"GET /api/v1/approvals/{id}":                                 mdmd.PermCommandsWipe,
	"POST /api/v1/approvals/{id}/approve":                        mdmd.PermCommandsWipe,
	"POST /api/v1/approvals/{id}/reject":                         mdmd.PermCommandsWipe,
	"POST /api/v1/bulk-actions/query":                            mdmd.PermCommandsQuery,
	"POST /api/v1/bulk-actions/lock":                             mdmd.PermCommandsLock,
	"POST /api/v1/bulk-actions/wipe":                             mdmd.PermCommandsWipe,
	"GET /api/v1/bulk-actions":                                   mdmd.PermCommandsRead,
	"GET /api/v1/bulk-actions/{id}":                              mdmd.PermCommandsRead,
	"POST /api/v1/bulk-actions/{id}/cancel":                      mdmd.PermCommandsQuery,
	"GET /api/v1/bulk-actions/{id}/devices":                      mdmd.PermCommandsRead,
	"GET /api/v1/audit/export":                                   mdmd.PermAuditRead,
	"POST /api/v1/profiles":                                      mdmd.PermProfilesManage,
	"GET /api/v1/profiles":                                       mdmd.PermDevicesRead,
	"GET /api/v1/profiles/{id}":                                  mdmd.PermDevicesRead,
	"GET /api/v1/profiles/{id}/mobileconfig":                     mdmd.PermProfilesManage,
	"PATCH /api/v1/profiles/{id}":                                mdmd.PermProfilesManage,
	"DELETE /api/v1/profiles/{id}":                               mdmd.PermProfilesManage,
	"POST /api/v1/profiles/{id}/assignments":                     mdmd.PermProfilesManage,
	"DELETE /api/v1/profiles/{id}/assignments":                   mdmd.PermProfilesManage,
	"GET /api/v1/devices/{id}/profiles":                          mdmd.PermDevicesRead,
	"POST /api/v1/devices/{id}/actions/sync-profiles":            mdmd.PermProfilesManage,
	"POST /api/v1/devices/{id}/actions/renew-identity":           mdmd.PermEnrollManage,
	"POST /api/v1/android/signup":                                mdmd.PermSettingsManage,
	"POST /api/v1/android/enterprise":                            mdmd.PermSettingsManage,
	"PUT /api/v1/android/enterprise":                             mdmd.PermSettingsManage,
	"GET /api/v1/android/enterprise":                             mdmd.PermSettingsManage,
	"POST /api/v1/android/enrollment-tokens":                     mdmd.PermEnrollManage,
	"GET /api/v1/android/enrollment-tokens":                      mdmd.PermEnrollManage,
	"DELETE /api/v1/android/enrollment-tokens/{id}":              mdmd.PermEnrollManage,
	"GET /api/v1/android/enrollment-tokens/{id}/qr.png":          mdmd.PermEnrollManage,
	"POST /api/v1/devices/{id}/actions/reset-password":           mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/reboot":                   mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/lost-mode":                mdmd.PermCommandsLock,
	"POST /api/v1/devices/{id}/actions/relinquish":               mdmd.PermCommandsWipe,
	"PUT /api/v1/android/policies/{id}":                          mdmd.PermProfilesManage,
	"GET /api/v1/android/policies":                               mdmd.PermDevicesRead,
	"GET /api/v1/android/policies/{id}":                          mdmd.PermDevicesRead,
	"GET /api/v1/devices/{id}/android":                           mdmd.PermDevicesRead,
	"POST /api/v1/compliance/policies":                           mdmd.PermComplianceManage,
	"GET /api/v1/compliance/policies":                            mdmd.PermDevicesRead,
	"GET /api/v1/compliance/policies/{id}":                       mdmd.PermDevicesRead,
	"PUT /api/v1/compliance/policies/{id}":                       mdmd.PermComplianceManage,
	"DELETE /api/v1/compliance/policies/{id}":                    mdmd.PermComplianceManage,
	"PUT /api/v1/compliance/policies/{id}/groups/{group}":        mdmd.PermComplianceManage,
	"DELETE /api/v1/compliance/policies/{id}/groups/{group}":     mdmd.PermComplianceManage,
	"GET /api/v1/devices/{id}/compliance":                        mdmd.PermDevicesRead,
	"POST /api/v1/devices/{id}/compliance/evaluate":              mdmd.PermCommandsQuery,
	"GET /api/v1/compliance/changes":                             mdmd.PermDevicesRead,
	"PUT /api/v1/mtd/devices/{id}/threat":                        mdmd.PermThreatReport,
	"POST /api/v1/mtd/devices/{id}/heartbeat":                    mdmd.PermThreatReport,
	"POST /api/v1/mtd/heartbeat":                                 mdmd.PermThreatReport,
	"DELETE /api/v1/devices/{id}/threat":                         mdmd.PermSettingsManage,
	"GET /api/v1/devices/{id}/threat":                            mdmd.PermDevicesRead,
	"GET /api/v1/compliance/actions":                             mdmd.PermDevicesRead,
	"POST /api/v1/compliance/actions/{id}/approve":               mdmd.PermCommandsWipe,
	"POST /api/v1/compliance/actions/{id}/reject":                mdmd.PermCommandsWipe,
	"POST /api/v1/webhooks":                                      mdmd.PermSettingsManage,
	"GET /api/v1/webhooks":                                       mdmd.PermSettingsManage,
	"GET /api/v1/webhooks/{id}":                                  mdmd.PermSettingsManage,
	"PATCH /api/v1/webhooks/{id}":                                mdmd.PermSettingsManage,
	"DELETE /api/v1/webhooks/{id}":                               mdmd.PermSettingsManage,
	"POST /api/v1/webhooks/{id}/rotate-secret":                   mdmd.PermSettingsManage,
	"GET /api/v1/webhooks/{id}/deliveries":                       mdmd.PermSettingsManage,
	"GET /api/v1/webhooks/{id}/deliveries/{delivery}":            mdmd.PermSettingsManage,
	"POST /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver": mdmd.PermSettingsManage,
	"POST /api/v1/webhooks/{id}/test":                            mdmd.PermSettingsManage,
	"GET /api/v1/ssf/streams":                                    mdmd.PermSSFStreams,
	"POST /api/v1/ssf/streams":                                   mdmd.PermSSFStreams,
	"PATCH /api/v1/ssf/streams":                                  mdmd.PermSSFStreams,
	"PUT /api/v1/ssf/streams":                                    mdmd.PermSSFStreams,
	"DELETE /api/v1/ssf/streams":                                 mdmd.PermSSFStreams,
	"GET /api/v1/ssf/status":                                     mdmd.PermSSFStreams,
	"POST /api/v1/ssf/status":                                    mdmd.PermSSFStreams,
	"POST /api/v1/ssf/subjects/add":                              mdmd.PermSSFStreams,
	"POST /api/v1/ssf/subjects/remove":                           mdmd.PermSSFStreams,
	"POST /api/v1/ssf/verify":                                    mdmd.PermSSFStreams,
	"POST /api/v1/ssf/poll/{stream_id}":                          mdmd.PermSSFStreams,
	"GET /api/v1/ssf/admin/streams":                              mdmd.PermSettingsManage,
	"POST /api/v1/ssf/admin/streams/{id}/status":                 mdmd.PermSettingsManage,
	"DELETE /api/v1/ssf/admin/streams/{id}":                      mdmd.PermSettingsManage,
	"POST /api/v1/compliance/token":                              mdmd.PermComplianceToken,
	"GET /api/v1/users":                                          mdmd.PermUsersManage,
	"POST /api/v1/users":                                         mdmd.PermUsersManage,
	"PATCH /api/v1/users/{id}":                                   mdmd.PermUsersManage,
	"DELETE /api/v1/users/{id}/totp":                             mdmd.PermUsersManage,
}

func TestRoleRouteMatrix(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	ctx := context.Background()
	tokens := map[mdmd.Role]string{}
	for _, r := range mdmd.Roles {
		tokens[r] = f.tokenFor(t, r)
	}
	certPEM, keyPEM, err := fakeapns.PushCertificate("com.apple.mgmt.External.matrix", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var profile mdmd.Profile
	f.mustDo(201, "POST", "/api/v1/profiles", f.Token, map[string]any{"name": "matrix", "kind": "passcode", "settings": map[string]any{}}).json(t, &profile)
	var link struct {
		Link mdmd.EnrollmentLink `json:"link"`
	}
	f.mustDo(201, "POST", "/api/v1/enrollment-links", f.Token, map[string]any{"one_time": false}).json(t, &link)

	// victim makes a fresh object for routes that destroy their target.
	victims := 0
	victim := func(role mdmd.Role, kind string) string {
		switch kind {
		case "token":
			name := "victim-" + string(role)
			f.mustDo(201, "POST", "/api/v1/tokens", f.Token, map[string]any{"name": name, "role": "viewer"})
			return tokenID(t, f.testServer, f.Token, name)
		case "group":
			var g mdmd.Group
			f.mustDo(201, "POST", "/api/v1/groups", f.Token, map[string]any{"name": "victim-" + string(role)}).json(t, &g)
			return g.ID
		case "profile":
			var p mdmd.Profile
			f.mustDo(201, "POST", "/api/v1/profiles", f.Token, map[string]any{"name": "victim", "kind": "passcode", "settings": map[string]any{}}).json(t, &p)
			return p.ID
		case "link":
			var l struct {
				Link mdmd.EnrollmentLink `json:"link"`
			}
			f.mustDo(201, "POST", "/api/v1/enrollment-links", f.Token, map[string]any{}).json(t, &l)
			return l.Link.ID
		case "device":
			victims++
			udid := fmt.Sprintf("victim-%s-%d", role, victims)
			d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentUnenrolled}
			if err := f.srv.Store().CreateDevice(ctx, d); err != nil {
				t.Fatal(err)
			}
			return d.ID
		}
		panic(kind)
	}
	assignment := map[string]string{"target_type": "device", "target_id": f.ios.ID}
	type call struct {
		id   func(mdmd.Role) string // the {id} of the path
		body any
	}
	// SSF names its stream in the query.
	queries := map[string]string{"DELETE /api/v1/ssf/streams": "?stream_id=unknown", "GET /api/v1/ssf/status": "?stream_id=unknown"}
	dev := func(mdmd.Role) string { return f.ios.ID }
	grp := func(mdmd.Role) string { return f.group.ID }
	prof := func(mdmd.Role) string { return profile.ID }
	none := func(mdmd.Role) string { return "" }
	calls := map[string]call{
		"GET /api/v1/me":                                             {none, nil},
		"GET /api/v1/devices":                                        {none, nil},
		"GET /api/v1/devices/{id}":                                   {dev, nil},
		"PATCH /api/v1/devices/{id}":                                 {dev, map[string]string{"name": "renamed"}},
		"DELETE /api/v1/devices/{id}":                                {func(r mdmd.Role) string { return victim(r, "device") }, nil},
		"GET /api/v1/devices/{id}/commands":                          {dev, nil},
		"GET /api/v1/commands/{id}":                                  {func(mdmd.Role) string { return f.command.ID }, nil},
		"POST /api/v1/commands/{id}/cancel":                          {func(mdmd.Role) string { return f.command.ID }, nil},
		"GET /api/v1/groups":                                         {none, nil},
		"POST /api/v1/groups":                                        {none, map[string]string{"name": "new-group"}},
		"GET /api/v1/groups/{id}":                                    {grp, nil},
		"PATCH /api/v1/groups/{id}":                                  {grp, map[string]string{"description": "d"}},
		"DELETE /api/v1/groups/{id}":                                 {func(r mdmd.Role) string { return victim(r, "group") }, nil},
		"POST /api/v1/groups/{id}/members":                           {grp, map[string]any{"device_ids": []string{f.ios.ID}}},
		"DELETE /api/v1/groups/{id}/members":                         {grp, map[string]any{"device_ids": []string{f.ios.ID}}},
		"GET /api/v1/tokens":                                         {none, nil},
		"POST /api/v1/tokens":                                        {none, map[string]string{"name": "minted", "role": "viewer"}},
		"DELETE /api/v1/tokens/{id}":                                 {func(r mdmd.Role) string { return victim(r, "token") }, nil},
		"GET /api/v1/audit":                                          {none, nil},
		"POST /api/v1/enrollment-links":                              {none, map[string]any{"one_time": true}},
		"GET /api/v1/enrollment-links":                               {none, nil},
		"DELETE /api/v1/enrollment-links/{id}":                       {func(r mdmd.Role) string { return victim(r, "link") }, nil},
		"GET /api/v1/enrollment-links/{id}/profile":                  {func(mdmd.Role) string { return link.Link.ID }, nil},
		"GET /api/v1/apple/push-certificate":                         {none, nil},
		"PUT /api/v1/apple/push-certificate":                         {none, map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)}},
		"POST /api/v1/devices/{id}/actions/query":                    {dev, map[string]any{"push": false}},
		"POST /api/v1/devices/{id}/actions/lock":                     {dev, map[string]any{"message": "m", "push": false}},
		"POST /api/v1/devices/{id}/actions/clear-passcode":           {dev, map[string]any{"push": false}},
		"POST /api/v1/devices/{id}/actions/wipe":                     {dev, map[string]any{"mode": "full", "reason": "matrix", "confirm": f.ios.SerialNumber, "push": false}},
		"POST /api/v1/groups/{id}/actions/query":                     {grp, map[string]any{"push": false}},
		"POST /api/v1/groups/{id}/actions/wipe":                      {grp, map[string]any{"mode": "full", "reason": "matrix", "confirm": f.group.Name, "push": false}},
		"GET /api/v1/approvals":                                      {none, nil},
		"GET /api/v1/approvals/{id}":                                 {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/approvals/{id}/approve":                        {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/approvals/{id}/reject":                         {func(mdmd.Role) string { return "unknown" }, map[string]any{"reason": "no"}},
		"GET /api/v1/audit/export":                                   {none, nil},
		"POST /api/v1/groups/{id}/actions/lock":                      {grp, map[string]any{"push": false}},
		"POST /api/v1/profiles":                                      {none, map[string]any{"name": "p", "kind": "passcode", "settings": map[string]any{}}},
		"GET /api/v1/profiles":                                       {none, nil},
		"GET /api/v1/profiles/{id}":                                  {prof, nil},
		"GET /api/v1/profiles/{id}/mobileconfig":                     {prof, nil},
		"PATCH /api/v1/profiles/{id}":                                {prof, map[string]any{"settings": map[string]any{"min_length": 7}}},
		"DELETE /api/v1/profiles/{id}":                               {func(r mdmd.Role) string { return victim(r, "profile") }, nil},
		"POST /api/v1/profiles/{id}/assignments":                     {prof, assignment},
		"DELETE /api/v1/profiles/{id}/assignments":                   {prof, assignment},
		"GET /api/v1/devices/{id}/profiles":                          {dev, nil},
		"POST /api/v1/devices/{id}/actions/sync-profiles":            {dev, map[string]any{}},
		"POST /api/v1/devices/{id}/actions/renew-identity":           {dev, map[string]any{}},
		"POST /api/v1/devices/{id}/actions/retire":                   {func(r mdmd.Role) string { return victim(r, "device") }, map[string]any{"reason": "matrix"}},
		"POST /api/v1/devices/{id}/actions/reset-password":           {dev, map[string]any{"new_password": "123456"}},
		"POST /api/v1/devices/{id}/actions/reboot":                   {dev, map[string]any{}},
		"POST /api/v1/devices/{id}/actions/lost-mode":                {dev, map[string]any{"enable": true, "message": "lost"}},
		"POST /api/v1/devices/{id}/actions/relinquish":               {dev, map[string]any{"reason": "matrix"}},
		"PUT /api/v1/android/policies/{id}":                          {func(mdmd.Role) string { return "default" }, map[string]any{}},
		"GET /api/v1/android/policies":                               {none, nil},
		"GET /api/v1/android/policies/{id}":                          {func(mdmd.Role) string { return "default" }, nil},
		"GET /api/v1/devices/{id}/android":                           {dev, nil},
		"POST /api/v1/android/signup":                                {none, map[string]any{}},
		"POST /api/v1/android/enterprise":                            {none, map[string]any{"signup_url_name": "x", "enterprise_token": "y"}},
		"PUT /api/v1/android/enterprise":                             {none, map[string]any{"name": "enterprises/X"}},
		"GET /api/v1/android/enterprise":                             {none, nil},
		"POST /api/v1/android/enrollment-tokens":                     {none, map[string]any{"kind": "work_profile"}},
		"GET /api/v1/android/enrollment-tokens":                      {none, nil},
		"DELETE /api/v1/android/enrollment-tokens/{id}":              {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/android/enrollment-tokens/{id}/qr.png":          {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/compliance/policies":                           {none, map[string]any{"name": "matrix", "rules": map[string]any{"min_os_version": "1"}}},
		"GET /api/v1/compliance/policies":                            {none, nil},
		"GET /api/v1/compliance/policies/{id}":                       {func(mdmd.Role) string { return "unknown" }, nil},
		"PUT /api/v1/compliance/policies/{id}":                       {func(mdmd.Role) string { return "unknown" }, map[string]any{"name": "x", "rules": map[string]any{}}},
		"DELETE /api/v1/compliance/policies/{id}":                    {func(mdmd.Role) string { return "unknown" }, nil},
		"PUT /api/v1/compliance/policies/{id}/groups/{group}":        {func(mdmd.Role) string { return "unknown" }, map[string]any{"priority": 1}},
		"DELETE /api/v1/compliance/policies/{id}/groups/{group}":     {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/devices/{id}/compliance":                        {func(r mdmd.Role) string { return victim(r, "device") }, nil},
		"POST /api/v1/devices/{id}/compliance/evaluate":              {func(r mdmd.Role) string { return victim(r, "device") }, nil},
		"GET /api/v1/compliance/changes":                             {none, nil},
		"PUT /api/v1/mtd/devices/{id}/threat":                        {dev, map[string]any{"level": "low", "source": "matrix"}},
		"POST /api/v1/mtd/devices/{id}/heartbeat":                    {dev, nil},
		"POST /api/v1/mtd/heartbeat":                                 {none, map[string]any{"device_ids": []string{f.ios.ID}}},
		"GET /api/v1/devices/{id}/threat":                            {dev, nil},
		"GET /api/v1/users":                                          {none, nil},
		"POST /api/v1/users":                                         {none, map[string]any{"username": "matrix-user", "password": "a long enough password", "role": "viewer"}},
		"PATCH /api/v1/users/{id}":                                   {func(mdmd.Role) string { return "unknown" }, map[string]any{"disabled": true}},
		"DELETE /api/v1/users/{id}/totp":                             {func(mdmd.Role) string { return "unknown" }, nil},
		"DELETE /api/v1/devices/{id}/threat":                         {dev, nil},
		"GET /api/v1/compliance/actions":                             {none, nil},
		"POST /api/v1/compliance/actions/{id}/approve":               {func(mdmd.Role) string { return "unknown" }, map[string]any{}},
		"POST /api/v1/compliance/actions/{id}/reject":                {func(mdmd.Role) string { return "unknown" }, map[string]any{"reason": "no"}},
		"POST /api/v1/compliance/token":                              {none, map[string]any{"device_id": f.ios.ID}},
		"POST /api/v1/webhooks":                                      {none, map[string]any{"name": "matrix", "url": "https://hooks.example.com/mdmd", "enabled": false}},
		"GET /api/v1/webhooks":                                       {none, nil},
		"GET /api/v1/webhooks/{id}":                                  {func(mdmd.Role) string { return "unknown" }, nil},
		"PATCH /api/v1/webhooks/{id}":                                {func(mdmd.Role) string { return "unknown" }, map[string]any{"enabled": false}},
		"DELETE /api/v1/webhooks/{id}":                               {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/webhooks/{id}/rotate-secret":                   {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/webhooks/{id}/deliveries":                       {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/webhooks/{id}/deliveries/{delivery}":            {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver": {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/webhooks/{id}/test":                            {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/ssf/streams":                                    {none, nil},
		"POST /api/v1/ssf/streams":                                   {none, map[string]any{"delivery": map[string]any{"method": "urn:ietf:rfc:8936"}}},
		"PATCH /api/v1/ssf/streams":                                  {none, map[string]any{"stream_id": "unknown", "description": "m"}},
		"PUT /api/v1/ssf/streams":                                    {none, map[string]any{"stream_id": "unknown", "delivery": map[string]any{"method": "urn:ietf:rfc:8936"}}},
		"DELETE /api/v1/ssf/streams":                                 {none, nil},
		"GET /api/v1/ssf/status":                                     {none, nil},
		"POST /api/v1/ssf/status":                                    {none, map[string]any{"stream_id": "unknown", "status": "paused"}},
		"POST /api/v1/ssf/subjects/add":                              {none, map[string]any{"stream_id": "unknown", "subject": map[string]any{"format": "opaque", "id": "x"}}},
		"POST /api/v1/ssf/subjects/remove":                           {none, map[string]any{"stream_id": "unknown", "subject": map[string]any{"format": "opaque", "id": "x"}}},
		"POST /api/v1/ssf/verify":                                    {none, map[string]any{"stream_id": "unknown"}},
		"POST /api/v1/ssf/poll/{stream_id}":                          {none, map[string]any{}},
		"GET /api/v1/ssf/admin/streams":                              {none, nil},
		"POST /api/v1/ssf/admin/streams/{id}/status":                 {func(mdmd.Role) string { return "unknown" }, map[string]any{"status": "paused"}},
		"DELETE /api/v1/ssf/admin/streams/{id}":                      {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/bulk-actions/query":                            {none, map[string]any{"filter": map[string]any{"q": "Ana"}, "push": false}},
		"POST /api/v1/bulk-actions/lock":                             {none, map[string]any{"filter": map[string]any{"q": "Ana"}, "message": "m", "push": false}},
		"POST /api/v1/bulk-actions/wipe":                             {none, map[string]any{"filter": map[string]any{"q": "Ana"}, "mode": "selective", "reason": "matrix", "confirm": "1"}},
		"GET /api/v1/bulk-actions":                                   {none, nil},
		"GET /api/v1/bulk-actions/{id}":                              {func(mdmd.Role) string { return "unknown" }, nil},
		"GET /api/v1/bulk-actions/{id}/devices":                      {func(mdmd.Role) string { return "unknown" }, nil},
		"POST /api/v1/bulk-actions/{id}/cancel":                      {func(mdmd.Role) string { return "unknown" }, map[string]any{"reason": "matrix"}},
	}
	routes := f.srv.APIRoutes()
	if len(routes) != len(calls) || len(routes) != len(apiPermissions) {
		t.Errorf("%d routes served, %d in the matrix, %d in the permission table", len(routes), len(calls), len(apiPermissions))
	}
	for _, rt := range routes {
		if want, ok := apiPermissions[rt.Method+" "+rt.Pattern]; !ok || rt.Permission != want {
			t.Errorf("route %s %s requires %q, the table says %q (listed: %v)", rt.Method, rt.Pattern, rt.Permission, want, ok)
		}
	}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Pattern
		c, ok := calls[key]
		if !ok {
			t.Fatalf("route %s has no matrix entry: add one", key)
		}
		for _, role := range mdmd.Roles {
			t.Run(key+"/"+string(role), func(t *testing.T) {
				allowed := rt.Permission == "" || role.Can(rt.Permission)
				id := "none"
				if allowed || strings.Contains(rt.Pattern, "{id}") {
					id = c.id(role)
				}
				path := strings.ReplaceAll(rt.Pattern, "{id}", id) + queries[key]
				before := f.auditCount(t, "access.denied")
				r := f.do(rt.Method, path, tokens[role], c.body)
				// Allowed: success, or a domain answer about the target
				// (no Apple enrollment behind a test device, already gone).
				if allowed && !(r.Status < 300 || r.Status == 404 || r.Status == 409) {
					t.Fatalf("role %s may %s but got %d: %s", role, key, r.Status, r.Body)
				}
				if !allowed {
					if r.Status != 403 || r.errCode(t) != mdmd.EForbidden {
						t.Fatalf("role %s lacks %s but got %d: %s", role, rt.Permission, r.Status, r.Body)
					}
					if f.auditCount(t, "access.denied") != before+1 {
						t.Fatal("denied access was not audited")
					}
				}
			})
		}
	}
	// The permissions a role holds are what the matrix enforced.
	if mdmd.RoleViewer.Can(mdmd.PermCommandsWipe) || mdmd.RoleHelpdesk.Can(mdmd.PermCommandsWipe) || !mdmd.RoleHelpdesk.Can(mdmd.PermCommandsLock) ||
		mdmd.RoleAdmin.Can(mdmd.PermThreatReport) || mdmd.RoleAuditor.Can(mdmd.PermDevicesRead) || mdmd.RoleHelpdesk.Can(mdmd.PermProfilesManage) {
		t.Fatal("role table changed")
	}
}

func decodeBody(resp *http.Response, v any) error {
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("status %d, body not JSON: %v: %s", resp.StatusCode, err, raw)
	}
	return nil
}

func TestDeviceAndGroupAPI(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.URL)
			helpdesk := f.tokenFor(t, mdmd.RoleHelpdesk)
			var list web.Page[mdmd.Device]
			tests := []struct {
				query string
				want  []string
			}{
				{"", []string{f.ios.ID, f.android.ID}},
				{"?platform=ios", []string{f.ios.ID}},
				{"?state=unenrolled", []string{f.android.ID}},
				{"?ownership=personal", []string{f.android.ID}},
				{"?owner=ana@example.com", []string{f.ios.ID}},
				{"?q=f2lx", []string{f.ios.ID}},
				{"?q=pixel&platform=ios", nil},
				{"?group=" + f.group.ID, nil},
			}
			for _, tc := range tests {
				list = web.Page[mdmd.Device]{}
				f.mustDo(200, "GET", "/api/v1/devices"+tc.query, helpdesk, nil).json(t, &list)
				var got []string
				for _, d := range list.Items {
					got = append(got, d.ID)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("devices%s = %v, want %v", tc.query, got, tc.want)
				}
			}
			list = web.Page[mdmd.Device]{}
			f.mustDo(200, "GET", "/api/v1/devices?limit=1", helpdesk, nil).json(t, &list)
			if len(list.Items) != 1 || list.NextCursor != f.ios.ID {
				t.Fatalf("page 1 = %+v", list)
			}
			cursor := list.NextCursor
			list = web.Page[mdmd.Device]{}
			f.mustDo(200, "GET", "/api/v1/devices?limit=1&cursor="+cursor, helpdesk, nil).json(t, &list)
			if len(list.Items) != 1 || list.Items[0].ID != f.android.ID || list.NextCursor != "" {
				t.Fatalf("page 2 = %+v", list)
			}

			// Groups and membership, visible on the device.
			var g mdmd.Group
			f.mustDo(201, "POST", "/api/v1/groups", f.Token, map[string]string{"name": "field", "description": "field staff"}).json(t, &g)
			f.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", f.Token, map[string]any{"device_ids": []string{f.ios.ID, f.android.ID}})
			var view web.DeviceView
			f.mustDo(200, "GET", "/api/v1/devices/"+f.ios.ID, helpdesk, nil).json(t, &view)
			if view.ID != f.ios.ID || *view.UDID != *f.ios.UDID || len(view.Groups) != 1 || view.Groups[0].Name != "field" {
				t.Fatalf("device view = %+v", view)
			}
			f.mustDo(200, "GET", "/api/v1/devices?group="+g.ID, helpdesk, nil).json(t, &list)
			if len(list.Items) != 2 {
				t.Fatalf("group filter = %d devices", len(list.Items))
			}
			f.mustDo(204, "DELETE", "/api/v1/groups/"+g.ID+"/members", f.Token, map[string]any{"device_ids": []string{f.android.ID}})
			f.mustDo(200, "GET", "/api/v1/devices?group="+g.ID, helpdesk, nil).json(t, &list)
			if len(list.Items) != 1 {
				t.Fatalf("after removal group has %d devices", len(list.Items))
			}
			var renamed mdmd.Group
			f.mustDo(200, "PATCH", "/api/v1/groups/"+g.ID, f.Token, map[string]string{"name": "field-ops"}).json(t, &renamed)
			if renamed.Name != "field-ops" || renamed.Description != "field staff" {
				t.Fatalf("renamed group = %+v", renamed)
			}
			f.mustDo(204, "DELETE", "/api/v1/groups/"+g.ID, f.Token, nil)
			f.mustDo(404, "GET", "/api/v1/groups/"+g.ID, f.Token, nil)

			// Device changes, commands and deletion.
			var d mdmd.Device
			f.mustDo(200, "PATCH", "/api/v1/devices/"+f.ios.ID, f.Token, map[string]string{"name": "Loaner 7", "owner_user": "cy@example.com"}).json(t, &d)
			if d.Name != "Loaner 7" || d.OwnerUser != "cy@example.com" || d.Model != f.ios.Model {
				t.Fatalf("patched device = %+v", d)
			}
			var cmds web.Page[mdmd.Command]
			f.mustDo(200, "GET", "/api/v1/devices/"+f.ios.ID+"/commands", helpdesk, nil).json(t, &cmds)
			if len(cmds.Items) != 1 || cmds.Items[0].ID != f.command.ID || cmds.Items[0].Status != mdmd.CommandQueued {
				t.Fatalf("commands = %+v", cmds)
			}
			f.mustDo(400, "GET", "/api/v1/devices/"+f.ios.ID+"/commands?status=bogus", helpdesk, nil)
			f.mustDo(404, "GET", "/api/v1/devices/nope/commands", helpdesk, nil)
			var c mdmd.Command
			f.mustDo(200, "POST", "/api/v1/commands/"+f.command.ID+"/cancel", f.Token, nil).json(t, &c)
			if c.Status != mdmd.CommandCanceled {
				t.Fatalf("canceled command = %+v", c)
			}
			f.mustDo(409, "POST", "/api/v1/commands/"+f.command.ID+"/cancel", f.Token, nil)
			f.mustDo(409, "DELETE", "/api/v1/devices/"+f.ios.ID, f.Token, nil)
			f.mustDo(204, "DELETE", "/api/v1/devices/"+f.android.ID, f.Token, nil)
			f.mustDo(404, "GET", "/api/v1/devices/"+f.android.ID, f.Token, nil)

			// Every change is in the audit log with its actor and request.
			var audit web.Page[mdmd.AuditEvent]
			f.mustDo(200, "GET", "/api/v1/audit?target="+f.android.ID, f.Token, nil).json(t, &audit)
			if len(audit.Items) != 1 || audit.Items[0].Action != "device.delete" || !strings.Contains(audit.Items[0].Actor, "bootstrap") ||
				audit.Items[0].RequestID == "" || audit.Items[0].Outcome != mdmd.OutcomeSuccess {
				t.Fatalf("audit for deletion = %+v", audit.Items)
			}
			for _, action := range []string{"group.create", "group.members.add", "group.members.remove", "group.update", "group.delete", "device.update", "command.cancel", "token.create"} {
				if f.auditCount(t, action) == 0 {
					t.Errorf("no audit event %s", action)
				}
			}
		})
	}
}

func TestTokenAPI(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	var created struct {
		Token  mdmd.APIToken `json:"token"`
		Secret string        `json:"secret"`
	}
	r := f.mustDo(201, "POST", "/api/v1/tokens", f.Token, map[string]any{"name": "siem", "role": "auditor", "expires_in_days": 7})
	r.json(t, &created)
	if !strings.HasPrefix(created.Secret, "mdmd_") || created.Token.Role != mdmd.RoleAuditor ||
		created.Token.ExpiresAt.Sub(time.Now()) > 7*24*time.Hour || created.Token.ExpiresAt.Sub(time.Now()) < 7*24*time.Hour-time.Minute {
		t.Fatalf("created token = %+v", created)
	}
	if strings.Contains(string(r.Body), created.Token.Hash) && created.Token.Hash != "" {
		t.Fatal("token hash exposed")
	}
	list := string(f.mustDo(200, "GET", "/api/v1/tokens", f.Token, nil).Body)
	if strings.Contains(list, created.Secret) || strings.Contains(list, auth.HashToken(created.Secret)) {
		t.Fatal("token listing exposes the secret or its hash")
	}
	var me struct {
		Role        mdmd.Role         `json:"role"`
		Permissions []mdmd.Permission `json:"permissions"`
	}
	f.mustDo(200, "GET", "/api/v1/me", created.Secret, nil).json(t, &me)
	if me.Role != mdmd.RoleAuditor || fmt.Sprint(me.Permissions) != "[audit:read]" {
		t.Fatalf("auditor me = %+v", me)
	}
	f.mustDo(200, "GET", "/api/v1/audit", created.Secret, nil)
	f.mustDo(403, "POST", "/api/v1/tokens", created.Secret, map[string]any{"name": "escalate", "role": "admin"})
	f.mustDo(404, "DELETE", "/api/v1/tokens/nope", f.Token, nil)
}

func TestRequestIDs(t *testing.T) {
	ts := start(t, "--data-dir", t.TempDir())
	req, _ := http.NewRequest("GET", ts.URL+"/healthz", nil)
	req.Header.Set("X-Request-Id", "proxy-abc.123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "proxy-abc.123" {
		t.Fatalf("request ID not propagated: %q", resp.Header.Get("X-Request-Id"))
	}
	req.Header.Set("X-Request-Id", "bad id with spaces")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("malformed request ID reused: %q", id)
	}
	a, b := ts.do("GET", "/healthz", "", nil), ts.do("GET", "/healthz", "", nil)
	if a.Header.Get("X-Request-Id") == b.Header.Get("X-Request-Id") {
		t.Fatal("request IDs repeat")
	}
}
