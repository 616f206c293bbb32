package app

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web/console"
)

// consolePermissions is what each console route must require, written
// down apart from the routes' own declarations (and matching the API's
// permission for the same action), so a route registered with the wrong
// permission fails the matrix instead of being checked against itself.
var consolePermissions = map[string]mdmd.Permission{
	"GET /devices":                                                 mdmd.PermDevicesRead,
	"GET /devices/{id}":                                            mdmd.PermDevicesRead,
	"POST /devices/{id}/actions/query":                             mdmd.PermCommandsQuery,
	"POST /devices/{id}/actions/lock":                              mdmd.PermCommandsLock,
	"POST /devices/{id}/actions/clear-passcode":                    mdmd.PermCommandsLock,
	"POST /devices/{id}/actions/wipe-selective":                    mdmd.PermCommandsWipe,
	"GET /groups":                                                  mdmd.PermDevicesRead,
	"POST /groups":                                                 mdmd.PermGroupsWrite,
	"POST /groups/{id}/delete":                                     mdmd.PermGroupsWrite,
	"GET /settings/push-certificate":                               mdmd.PermSettingsManage,
	"POST /settings/push-certificate":                              mdmd.PermSettingsManage,
	"GET /enrollment":                                              mdmd.PermEnrollManage,
	"POST /enrollment/links":                                       mdmd.PermEnrollManage,
	"POST /enrollment/links/{id}/revoke":                           mdmd.PermEnrollManage,
	"POST /enrollment/android-tokens":                              mdmd.PermEnrollManage,
	"POST /enrollment/android-tokens/{id}/revoke":                  mdmd.PermEnrollManage,
	"GET /settings/tokens":                                         mdmd.PermTokensManage,
	"POST /settings/tokens":                                        mdmd.PermTokensManage,
	"POST /settings/tokens/{id}/revoke":                            mdmd.PermTokensManage,
	"GET /settings/users":                                          mdmd.PermUsersManage,
	"POST /settings/users":                                         mdmd.PermUsersManage,
	"POST /settings/users/{id}/disable":                            mdmd.PermUsersManage,
	"POST /settings/users/{id}/enable":                             mdmd.PermUsersManage,
	"POST /settings/users/{id}/reset-totp":                         mdmd.PermUsersManage,
	"GET /audit":                                                   mdmd.PermAuditRead,
	"GET /settings":                                                mdmd.PermSettingsManage,
	"GET /groups/{id}":                                             mdmd.PermDevicesRead,
	"POST /groups/{id}/members":                                    mdmd.PermGroupsWrite,
	"POST /groups/{id}/members/{device}/remove":                    mdmd.PermGroupsWrite,
	"GET /policies":                                                mdmd.PermDevicesRead,
	"GET /policies/new":                                            mdmd.PermComplianceManage,
	"POST /policies":                                               mdmd.PermComplianceManage,
	"GET /policies/{id}":                                           mdmd.PermDevicesRead,
	"POST /policies/{id}":                                          mdmd.PermComplianceManage,
	"POST /policies/{id}/delete":                                   mdmd.PermComplianceManage,
	"POST /policies/{id}/groups":                                   mdmd.PermComplianceManage,
	"POST /policies/{id}/groups/{group}/remove":                    mdmd.PermComplianceManage,
	"GET /profiles":                                                mdmd.PermDevicesRead,
	"POST /profiles":                                               mdmd.PermProfilesManage,
	"GET /profiles/{id}":                                           mdmd.PermDevicesRead,
	"POST /profiles/{id}":                                          mdmd.PermProfilesManage,
	"GET /profiles/{id}/mobileconfig":                              mdmd.PermProfilesManage,
	"POST /profiles/{id}/delete":                                   mdmd.PermProfilesManage,
	"POST /profiles/{id}/assignments":                              mdmd.PermProfilesManage,
	"POST /profiles/{id}/assignments/delete":                       mdmd.PermProfilesManage,
	"GET /settings/android":                                        mdmd.PermSettingsManage,
	"POST /settings/android/signup":                                mdmd.PermSettingsManage,
	"POST /settings/android/enterprise":                            mdmd.PermSettingsManage,
	"POST /settings/android/bind":                                  mdmd.PermSettingsManage,
	"GET /settings/webhooks":                                       mdmd.PermSettingsManage,
	"POST /settings/webhooks":                                      mdmd.PermSettingsManage,
	"GET /settings/webhooks/{id}":                                  mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/enable":                          mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/disable":                         mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/rotate-secret":                   mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/test":                            mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/delete":                          mdmd.PermSettingsManage,
	"POST /settings/webhooks/{id}/deliveries/{delivery}/redeliver": mdmd.PermSettingsManage,
	"GET /settings/ssf":                                            mdmd.PermSettingsManage,
	"POST /settings/ssf/{id}/status":                               mdmd.PermSettingsManage,
	"POST /settings/ssf/{id}/delete":                               mdmd.PermSettingsManage,
	"GET /settings/mtd":                                            mdmd.PermSettingsManage,
	"POST /settings/mtd/devices/{id}/release":                      mdmd.PermSettingsManage,
	"GET /bulk":                                                    mdmd.PermCommandsRead,
	"GET /bulk/new":                                                mdmd.PermCommandsRead,
	"POST /bulk/query":                                             mdmd.PermCommandsQuery,
	"POST /bulk/lock":                                              mdmd.PermCommandsLock,
	"POST /bulk/wipe":                                              mdmd.PermCommandsWipe,
	"GET /bulk/{id}":                                               mdmd.PermCommandsRead,
	"POST /bulk/{id}/cancel":                                       mdmd.PermCommandsQuery,
	"POST /devices/{id}/actions/wipe-full":                         mdmd.PermCommandsWipe,
	"GET /approvals":                                               mdmd.PermCommandsWipe,
	"POST /approvals/{id}/approve":                                 mdmd.PermCommandsWipe,
	"POST /approvals/{id}/reject":                                  mdmd.PermCommandsWipe,
	"GET /":                                                        mdmd.PermDevicesRead,
}

// The console's role × route matrix: every console route answers 403 to
// every role that lacks its permission (and audits the denial), and
// never to a role that holds it; and no page a role may open shows a
// form or a link to a route that role cannot use.
func TestConsoleRoleRouteMatrix(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	routes := f.srv.ConsoleRoutes()
	if len(routes) != len(consolePermissions) {
		t.Errorf("%d console routes, %d in the table", len(routes), len(consolePermissions))
	}
	for _, rt := range routes {
		want, ok := consolePermissions[rt.Method+" "+rt.Pattern]
		if !ok {
			t.Fatalf("console route %s %s is not in consolePermissions: add it", rt.Method, rt.Pattern)
		}
		if rt.Permission != want {
			t.Errorf("console route %s %s requires %q, want %q", rt.Method, rt.Pattern, rt.Permission, want)
		}
	}
	sessions := map[mdmd.Role]func(method, path string, form url.Values) (int, string){}
	for _, role := range mdmd.Roles {
		sessions[role] = consoleSession(t, f.testServer, role)
	}
	// Pages open on real objects where there are some; other parameters
	// name nothing (a 404 is a fine answer for a role that may ask).
	ids := consoleObjects(t, f)
	param := regexp.MustCompile(`\{[^}]+\}`)
	pathOf := func(rt console.Route) string {
		if id, ok := ids[rt.Pattern]; ok && rt.Method == "GET" {
			return strings.ReplaceAll(rt.Pattern, "{id}", id)
		}
		return param.ReplaceAllString(rt.Pattern, "unknown")
	}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Pattern
		for _, role := range mdmd.Roles {
			t.Run(key+"/"+string(role), func(t *testing.T) {
				allowed := rt.Permission == "" || role.Can(rt.Permission)
				var form url.Values
				if rt.Method == "POST" {
					form = url.Values{}
				}
				before := f.auditCount(t, "access.denied")
				code, body := sessions[role](rt.Method, pathOf(rt), form)
				switch {
				case !allowed && code != 403:
					t.Fatalf("role %s lacks %s but got %d", role, rt.Permission, code)
				case !allowed && f.auditCount(t, "access.denied") != before+1:
					t.Fatal("the denial was not audited")
				case allowed && (code == 403 || code >= 500):
					t.Fatalf("role %s may %s but got %d:\n%s", role, key, code, body)
				}
			})
		}
	}

	// What each role's pages offer.
	match := func(method, target string) *console.Route {
		target, _, _ = strings.Cut(target, "?")
		for i, rt := range routes {
			if rt.Method != method {
				continue
			}
			if ok, _ := regexp.MatchString("^"+param.ReplaceAllString(rt.Pattern, "[^/]+")+"$", target); ok {
				return &routes[i]
			}
		}
		return nil
	}
	formRE := regexp.MustCompile(`<form[^>]*method="post"[^>]*action="([^"]+)"|<form[^>]*action="([^"]+)"[^>]*method="post"`)
	linkRE := regexp.MustCompile(`href="(/[^"]*)"`)
	pages := 0
	for _, role := range mdmd.Roles {
		for _, rt := range routes {
			if rt.Method != "GET" || !(rt.Permission == "" || role.Can(rt.Permission)) {
				continue
			}
			code, body := sessions[role]("GET", pathOf(rt), nil)
			if code != 200 {
				continue
			}
			pages++
			for _, m := range formRE.FindAllStringSubmatch(body, -1) {
				action := m[1] + m[2]
				if to := match("POST", action); to != nil && to.Permission != "" && !role.Can(to.Permission) {
					t.Errorf("%s sees a form to %s on %s, which needs %s", role, action, rt.Pattern, to.Permission)
				}
			}
			for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
				href := strings.ReplaceAll(m[1], "&amp;", "&")
				if to := match("GET", href); to != nil && to.Permission != "" && !role.Can(to.Permission) {
					t.Errorf("%s sees a link to %s on %s, which needs %s", role, href, rt.Pattern, to.Permission)
				}
			}
		}
	}
	if pages < 20 {
		t.Fatalf("only %d pages were checked for hidden actions", pages)
	}
}

// The device list's page links carry the filter and the cursor as a
// query string a browser reads back (html/template must not escape the
// "=" of a query it did not build): following "Next page" shows the next
// devices under the same filter, and the bulk action link keeps the filter.
func TestConsoleDeviceListLinks(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	ctx := context.Background()
	for i := range 55 {
		udid := fmt.Sprintf("pager-%03d", i)
		if err := f.srv.Store().CreateDevice(ctx, &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: fmt.Sprintf("Pager %03d", i),
			Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}); err != nil {
			t.Fatal(err)
		}
	}
	admin := consoleSession(t, f.testServer, mdmd.RoleAdmin)
	_, first := admin("GET", "/devices?q=pager&sort=name", nil)
	next := regexp.MustCompile(`href="(/devices\?[^"]+)" rel="next"`).FindStringSubmatch(first)
	if next == nil || !strings.Contains(first, "Pager 049") || strings.Contains(first, "Pager 050") {
		t.Fatalf("first page: next link %v", next)
	}
	u, err := url.Parse(strings.ReplaceAll(next[1], "&amp;", "&"))
	if err != nil || u.Query().Get("q") != "pager" || u.Query().Get("sort") != "name" || u.Query().Get("cursor") == "" {
		t.Fatalf("next link %q: query %v (%v)", next[1], u.Query(), err)
	}
	code, second := admin("GET", u.String(), nil)
	if code != 200 || !strings.Contains(second, "Pager 050") || !strings.Contains(second, "Pager 054") || strings.Contains(second, "Pager 049") {
		t.Fatalf("second page (%d) does not continue the first", code)
	}
	bulkLink := regexp.MustCompile(`href="(/bulk/new\?[^"]*)"`).FindStringSubmatch(first)
	if bulkLink == nil {
		t.Fatal("no bulk action link")
	}
	if b, _ := url.Parse(strings.ReplaceAll(bulkLink[1], "&amp;", "&")); b.Query().Get("q") != "pager" || b.Query().Has("sort") {
		t.Fatalf("bulk link %q", bulkLink[1])
	}
	if _, page := admin("GET", bulkLink[1], nil); !strings.Contains(page, "Act on 55 devices") {
		t.Fatal("the bulk page does not count the filtered devices")
	}
}

// Every form control on every console page an admin opens has an
// accessible name: a <label for> naming its id, a <label> around it, or
// an aria-label. (Screen readers read nothing else.)
func TestConsoleFormLabels(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	ids := consoleObjects(t, f)
	admin := consoleSession(t, f.testServer, mdmd.RoleAdmin)
	checked := 0
	for _, rt := range f.srv.ConsoleRoutes() {
		if rt.Method != "GET" || strings.Contains(rt.Pattern, "mobileconfig") {
			continue
		}
		path := rt.Pattern
		if id, ok := ids[rt.Pattern]; ok {
			path = strings.ReplaceAll(path, "{id}", id)
		} else if strings.Contains(path, "{") {
			continue
		}
		code, body := admin("GET", path, nil)
		if code != 200 {
			t.Errorf("GET %s: %d", path, code)
			continue
		}
		doc, err := html.Parse(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, missing := range unlabelled(doc) {
			t.Errorf("%s: a form control has no label: %s", path, missing)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d pages checked", checked)
	}
}

// unlabelled lists the form controls of a page without an accessible name.
func unlabelled(doc *html.Node) []string {
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	labelled := map[string]bool{}
	var controls []*html.Node
	wrapped := map[*html.Node]bool{}
	var walk func(n *html.Node, inLabel bool)
	walk = func(n *html.Node, inLabel bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "label":
				if f := attr(n, "for"); f != "" {
					labelled[f] = true
				}
				inLabel = true
			case "input", "select", "textarea":
				switch attr(n, "type") {
				case "hidden", "submit", "button":
				default:
					controls = append(controls, n)
					wrapped[n] = inLabel
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inLabel)
		}
	}
	walk(doc, false)
	var out []string
	for _, n := range controls {
		if wrapped[n] || attr(n, "aria-label") != "" || attr(n, "aria-labelledby") != "" || (attr(n, "id") != "" && labelled[attr(n, "id")]) {
			continue
		}
		out = append(out, fmt.Sprintf("<%s name=%q id=%q>", n.Data, attr(n, "name"), attr(n, "id")))
	}
	return out
}

func TestUnlabelled(t *testing.T) {
	for _, tc := range []struct {
		page string
		want int
	}{
		{`<label for="a">A</label><input id="a" name="a">`, 0},
		{`<label><input type="radio" name="m"> M</label>`, 0},
		{`<input name="q" aria-label="Search">`, 0},
		{`<input type="hidden" name="csrf"><button>Go</button>`, 0},
		{`<input id="b" name="b">`, 1},
		{`<label for="x">X</label><select id="y" name="y"></select><textarea name="z"></textarea>`, 2},
	} {
		doc, err := html.Parse(strings.NewReader(tc.page))
		if err != nil {
			t.Fatal(err)
		}
		if got := unlabelled(doc); len(got) != tc.want {
			t.Errorf("%s: unlabelled %v, want %d", tc.page, got, tc.want)
		}
	}
}

// consoleObjects makes one object of each kind that has a console detail
// page (a policy, a profile, a disabled webhook that never delivers, a bulk
// action) and returns the ID to open each detail pattern with.
func consoleObjects(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	var policy, profile, hook, bulkAction struct{ ID string }
	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "pages", "rules": map[string]any{"min_os_version": "17"}}).json(t, &policy)
	f.mustDo(201, "POST", "/api/v1/profiles", f.Token, map[string]any{"name": "pages", "kind": "passcode", "settings": map[string]any{}}).json(t, &profile)
	f.mustDo(201, "POST", "/api/v1/webhooks", f.Token, map[string]any{"name": "pages", "url": "https://hooks.example.com/mdmd", "enabled": false}).json(t, &hook)
	f.mustDo(202, "POST", "/api/v1/bulk-actions/query", f.Token, map[string]any{"filter": map[string]any{"q": "Ana"}, "push": false}).json(t, &bulkAction)
	return map[string]string{"/devices/{id}": f.ios.ID, "/groups/{id}": f.group.ID, "/policies/{id}": policy.ID,
		"/profiles/{id}": profile.ID, "/settings/webhooks/{id}": hook.ID, "/bulk/{id}": bulkAction.ID}
}
