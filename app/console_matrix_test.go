package app

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web/console"
)

// The console's role × route matrix: every console route answers 403 to
// every role that lacks its permission (and audits the denial), and
// never to a role that holds it; and no page a role may open shows a
// form or a link to a route that role cannot use.
func TestConsoleRoleRouteMatrix(t *testing.T) {
	f := newFixture(t, backends(t)[0].URL)
	routes := f.srv.ConsoleRoutes()
	if len(routes) < 40 {
		t.Fatalf("only %d console routes: the console is not fully wired", len(routes))
	}
	sessions := map[mdmd.Role]func(method, path string, form url.Values) (int, string){}
	for _, role := range mdmd.Roles {
		sessions[role] = consoleSession(t, f.testServer, role)
	}
	// Pages open on real objects where there are some; other parameters
	// name nothing (a 404 is a fine answer for a role that may ask).
	ids := map[string]string{"/devices/{id}": f.ios.ID, "/groups/{id}": f.group.ID}
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
