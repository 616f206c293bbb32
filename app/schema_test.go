package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/apple/schema"
)

// TestSimulatorSpeaksAppleSchemas records what a simulated iPhone sends
// through a proxy in front of mdmd and validates every check-in message
// and every command result against Apple's schemas, so the simulator that
// the other tests rely on is faithful to the protocol.
func TestSimulatorSpeaksAppleSchemas(t *testing.T) {
	var mu sync.Mutex
	var bodies []struct {
		path string
		body []byte
	}
	var target *url.URL
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			raw, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(raw))
			mu.Lock()
			bodies = append(bodies, struct {
				path string
				body []byte
			}{r.URL.Path, raw})
			mu.Unlock()
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	env := newAppleEnv(t, backends(t)[0].URL, "--public-url", proxy.URL)
	target, _ = url.Parse(env.URL)

	link, _ := env.link(t, map[string]any{"one_time": true})
	sim, dev := env.enroll(t, link, "00008110-0000000000F00001", applesim.DefaultPosture)
	ctx := context.Background()
	env.action(t, env.Token, dev.ID, "query", map[string]any{"queries": []string{"device_information", "security_info",
		"profile_list", "installed_applications", "certificate_list"}})
	env.action(t, env.Token, dev.ID, "lock", map[string]any{"message": "hello"})
	env.action(t, env.Token, dev.ID, "clear-passcode", map[string]any{})
	if err := sim.CheckOut(ctx); err != nil {
		t.Fatal(err)
	}

	checkins := map[string]string{"Authenticate": "checkin/authenticate.yaml", "TokenUpdate": "checkin/tokenupdate.yaml",
		"CheckOut": "checkin/checkout.yaml"}
	results := map[string]string{"DeviceInformation": "commands/information.device.yaml", "SecurityInfo": "commands/information.security.yaml",
		"ProfileList": "commands/profile.list.yaml", "InstalledApplicationList": "commands/application.installed.list.yaml",
		"CertificateList": "commands/certificate.list.yaml", "DeviceLock": "commands/device.lock.yaml", "ClearPasscode": "commands/passcode.clear.yaml"}
	// Keys the schemas mark required that do not apply to an iPhone's
	// device channel (macOS-only or user-channel keys).
	notRequired := schema.Options{NotRequired: []string{"EnrollmentID", "EnrollmentUserID", "NotOnConsole", "UserID",
		"UserShortName", "UserLongName", "AwaitingConfiguration", "MessageResult"}}
	seen := map[string]bool{}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		var m map[string]any
		if err := plist.Unmarshal(b.body, &m); err != nil {
			t.Fatalf("%s: %v", b.path, err)
		}
		if b.path == "/mdm/checkin" {
			mt, _ := m["MessageType"].(string)
			file, ok := checkins[mt]
			if !ok {
				t.Fatalf("unexpected check-in %s", mt)
			}
			if errs := schema.Validate(schema.MustLoad(file).PayloadKeys, m, notRequired); len(errs) > 0 {
				t.Errorf("%s:%s", mt, schema.Join(errs))
			}
			seen[mt] = true
			continue
		}
		if m["Status"] != "Acknowledged" {
			continue
		}
		cmd, err := env.srv.Store().GetCommand(ctx, m["CommandUUID"].(string))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"UDID", "Status", "CommandUUID"} {
			delete(m, k)
		}
		if errs := schema.Validate(schema.MustLoad(results[cmd.RequestType]).ResponseKeys, m, notRequired); len(errs) > 0 {
			t.Errorf("%s result:%s", cmd.RequestType, schema.Join(errs))
		}
		seen[cmd.RequestType] = true
	}
	for name := range checkins {
		if !seen[name] {
			t.Errorf("no %s check-in recorded", name)
		}
	}
	for name := range results {
		if !seen[name] {
			t.Errorf("no %s result recorded", name)
		}
	}
}
