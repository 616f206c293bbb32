package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/apple/fakeapns"
	"github.com/mdmd/mdmd/web"
)

// appleEnv is a running mdmd with a fake APNs, a push certificate and a
// fleet of simulated iPhones that connect whenever they are pushed.
type appleEnv struct {
	*testServer
	apns  *fakeapns.Server
	trust *x509.CertPool
	topic string

	mu      sync.Mutex
	devices map[string]*applesim.Device // by push token
	wakes   map[string]int              // completed connections by UDID
	errs    []error
}

func newAppleEnv(t *testing.T, dbURL string, args ...string) *appleEnv {
	t.Helper()
	fake := fakeapns.Start()
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "apns-ca.pem")
	if err := fake.CAFile(caFile); err != nil {
		t.Fatal(err)
	}
	ts := start(t, append([]string{"--data-dir", dir, "--database-url", dbURL, "--apns-url", fake.URL(), "--apns-ca-file", caFile,
		"--job-poll", "50ms"}, args...)...)
	env := &appleEnv{testServer: ts, apns: fake, devices: map[string]*applesim.Device{}, wakes: map[string]int{},
		topic: "com.apple.mgmt.External.2f1e6a7c-5d3b-4a8e-9c0f-1b2a3c4d5e6f"}
	for i, a := range args {
		if a == "--tls-cert" && i+1 < len(args) {
			pemData, err := os.ReadFile(args[i+1])
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pemData)
			ts.useTLS(roots)
		}
	}
	env.trust = x509.NewCertPool()
	env.trust.AddCert(ts.srv.Identities().CA.Cert)
	certPEM, keyPEM, err := fakeapns.PushCertificate(env.topic, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.mustDo(200, "PUT", "/api/v1/apple/push-certificate", ts.Token, map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)})
	fake.OnPush(func(p fakeapns.Push) {
		env.mu.Lock()
		d := env.devices[p.Token]
		env.mu.Unlock()
		if d == nil {
			return
		}
		_, err := d.Woken(context.Background())
		env.mu.Lock()
		defer env.mu.Unlock()
		if err != nil {
			env.errs = append(env.errs, fmt.Errorf("%s: %w", d.UDID, err))
		}
		env.wakes[d.UDID]++
	})
	t.Cleanup(func() {
		env.mu.Lock()
		defer env.mu.Unlock()
		for _, err := range env.errs {
			t.Errorf("simulated device: %v", err)
		}
	})
	return env
}

// link creates an enrollment link and returns its URL and ID.
func (env *appleEnv) link(t *testing.T, body map[string]any) (url, id string) {
	var out struct {
		Link mdmd.EnrollmentLink `json:"link"`
		URL  string              `json:"url"`
	}
	env.mustDo(201, "POST", "/api/v1/enrollment-links", env.Token, body).json(t, &out)
	return out.URL, out.Link.ID
}

// enroll enrolls a new simulated iPhone through the link and registers it
// for pushes.
func (env *appleEnv) enroll(t *testing.T, url, udid string, p applesim.Posture) (*applesim.Device, *mdmd.Device) {
	t.Helper()
	d := applesim.New(udid, "SN"+udid[len(udid)-6:], p)
	if err := d.Enroll(context.Background(), url, env.trust); err != nil {
		t.Fatalf("enroll %s: %v", udid, err)
	}
	env.mu.Lock()
	// A device enrolled again replaces its old self, whose identity is
	// now revoked: a push still on its way to the old token is not its.
	for tok, old := range env.devices {
		if old.UDID == udid {
			delete(env.devices, tok)
		}
	}
	env.devices[d.PushToken()] = d
	env.mu.Unlock()
	dev, err := env.srv.Store().GetDeviceByUDID(context.Background(), udid)
	if err != nil {
		t.Fatal(err)
	}
	return d, dev
}

// action posts a device action and waits until every command it queued
// has a final status, returning them.
func (env *appleEnv) action(t *testing.T, token, deviceID, action string, body map[string]any) []mdmd.Command {
	t.Helper()
	var out struct {
		Commands []mdmd.Command `json:"commands"`
	}
	env.mustDo(202, "POST", "/api/v1/devices/"+deviceID+"/actions/"+action, token, body).json(t, &out)
	return env.waitFinal(t, out.Commands)
}

func (env *appleEnv) waitFinal(t *testing.T, cmds []mdmd.Command) []mdmd.Command {
	t.Helper()
	final := make([]mdmd.Command, len(cmds))
	eventually(t, 15*time.Second, "commands to finish", func() bool {
		for i, c := range cmds {
			got, err := env.srv.Store().GetCommand(context.Background(), c.ID)
			if err != nil || !got.Status.Final() {
				return false
			}
			final[i] = *got
		}
		return true
	})
	return final
}

func (env *appleEnv) view(t *testing.T, id string) web.DeviceView {
	var v web.DeviceView
	env.mustDo(200, "GET", "/api/v1/devices/"+id, env.Token, nil).json(t, &v)
	return v
}

func TestAppleEndToEnd(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL)
			ctx := context.Background()
			var cert struct {
				Topic         string `json:"topic"`
				ExpiresInDays int    `json:"expires_in_days"`
			}
			env.mustDo(200, "GET", "/api/v1/apple/push-certificate", env.Token, nil).json(t, &cert)
			if cert.Topic != env.topic || cert.ExpiresInDays < 360 {
				t.Fatalf("push certificate info = %+v", cert)
			}

			url, linkID := env.link(t, map[string]any{"one_time": true, "owner_user": "ana@example.com", "ownership": "corporate"})
			defer func() {
				// The link's secret never reaches the logs.
				if secret := url[strings.LastIndex(url, "/")+1:]; strings.Contains(env.Stderr.String(), secret) {
					t.Error("the enrollment link's secret is in the logs")
				}
			}()
			sim, dev := env.enroll(t, url, "00008110-000A1C2E3F4D0001", applesim.DefaultPosture)
			if dev.EnrollmentState != mdmd.EnrollmentEnrolled || dev.OwnerUser != "ana@example.com" ||
				dev.Ownership != mdmd.OwnershipCorporate || dev.SerialNumber != sim.Serial || dev.OSVersion != "18.1" {
				t.Fatalf("enrolled device = %+v", dev)
			}
			// A one-time link enrolls one device only.
			if err := applesim.New("00008110-000A1C2E3F4D0099", "SNX", applesim.DefaultPosture).Enroll(ctx, url, env.trust); err == nil {
				t.Fatal("a used one-time link enrolled a second device")
			}
			var links struct {
				Items []mdmd.EnrollmentLink `json:"items"`
			}
			env.mustDo(200, "GET", "/api/v1/enrollment-links", env.Token, nil).json(t, &links)
			if len(links.Items) != 1 || links.Items[0].ID != linkID || links.Items[0].Uses != 1 {
				t.Fatalf("links = %+v", links.Items)
			}

			// Posture queries: pushed through apns2 to the fake APNs, which
			// wakes the device; results are parsed into posture.
			helpdesk := (&fixture{testServer: env.testServer}).tokenFor(t, mdmd.RoleHelpdesk)
			done := env.action(t, helpdesk, dev.ID, "query", map[string]any{})
			for _, c := range done {
				if c.Status != mdmd.CommandAcknowledged || len(c.Result) == 0 {
					t.Fatalf("query command = %s %s (%s)", c.RequestType, c.Status, c.Error)
				}
			}
			v := env.view(t, dev.ID)
			p := v.Posture
			if p == nil || p.OSVersion != "18.1" || p.BuildVersion != "22B83" || p.PasscodePresent == nil || !*p.PasscodePresent ||
				p.PasscodeCompliant == nil || !*p.PasscodeCompliant || p.Encrypted == nil || !*p.Encrypted ||
				p.Supervised == nil || *p.Supervised || !strings.Contains(string(p.Details), "io.mdmd.enrollment") {
				t.Fatalf("posture = %+v details %s", p, p.Details)
			}
			pushes := env.apns.Pushes()
			if len(pushes) == 0 || pushes[0].Topic != env.topic || pushes[0].PushType != "mdm" || pushes[0].Token != sim.PushToken() {
				t.Fatalf("pushes = %+v", pushes)
			}

			// Posture changes are seen at the next query.
			sim.SetPosture(applesim.Posture{OSVersion: "17.2", BuildVersion: "21C62", ProductName: "iPhone14,5",
				PasscodePresent: false, EncryptionCaps: 1})
			env.action(t, helpdesk, dev.ID, "query", map[string]any{"queries": []string{"device_information", "security_info",
				"installed_applications", "certificate_list"}})
			p = env.view(t, dev.ID).Posture
			if p.OSVersion != "17.2" || *p.PasscodePresent || *p.Encrypted || env.view(t, dev.ID).OSVersion != "17.2" {
				t.Fatalf("changed posture = %+v", p)
			}

			// Lock with a message.
			lock := env.action(t, helpdesk, dev.ID, "lock", map[string]any{"message": "Return to IT, desk 4", "phone_number": "+1 555 0100"})
			if lock[0].Status != mdmd.CommandAcknowledged || !sim.State().Locked || sim.State().LockMessage != "Return to IT, desk 4" {
				t.Fatalf("lock: %+v, device %+v", lock[0], sim.State())
			}
			// Clear passcode uses the unlock token from TokenUpdate.
			sim.SetPosture(applesim.DefaultPosture)
			cp := env.action(t, helpdesk, dev.ID, "clear-passcode", map[string]any{})
			if cp[0].Status != mdmd.CommandAcknowledged {
				t.Fatalf("clear passcode = %+v", cp[0])
			}

			// NotNow: skipped for the rest of that connection, delivered again later.
			sim.NotNowFor("SecurityInfo", 1)
			var q struct {
				Commands []mdmd.Command `json:"commands"`
			}
			env.mustDo(202, "POST", "/api/v1/devices/"+dev.ID+"/actions/query", helpdesk, map[string]any{"queries": []string{"security_info", "profile_list"}}).json(t, &q)
			eventually(t, 10*time.Second, "NotNow recorded and the next command done", func() bool {
				a, _ := env.srv.Store().GetCommand(ctx, q.Commands[0].ID)
				b, _ := env.srv.Store().GetCommand(ctx, q.Commands[1].ID)
				return a.Status == mdmd.CommandNotNow && b.Status == mdmd.CommandAcknowledged
			})
			// A later wake-up delivers it again.
			if err := env.srv.Commands().Push(ctx, dev.ID); err != nil {
				t.Fatal(err)
			}
			final := env.waitFinal(t, q.Commands[:1])
			if final[0].Status != mdmd.CommandAcknowledged || final[0].Deliveries != 2 {
				t.Fatalf("NotNow command after retry = %s, %d deliveries", final[0].Status, final[0].Deliveries)
			}

			// Error results are stored with their error chain.
			sim.FailFor("CertificateList")
			failed := env.action(t, helpdesk, dev.ID, "query", map[string]any{"queries": []string{"certificate_list"}})
			if failed[0].Status != mdmd.CommandError || !strings.Contains(failed[0].Error, "12021") {
				t.Fatalf("failed command = %+v", failed[0])
			}

			// Unknown queries and helpdesk wipes are refused, nothing queued.
			env.mustDo(400, "POST", "/api/v1/devices/"+dev.ID+"/actions/query", helpdesk, map[string]any{"queries": []string{"location"}})
			env.mustDo(403, "POST", "/api/v1/devices/"+dev.ID+"/actions/wipe", helpdesk, map[string]any{"mode": "full", "reason": "x", "confirm": sim.Name})
			env.mustDo(400, "POST", "/api/v1/devices/"+dev.ID+"/actions/wipe", env.Token, map[string]any{"mode": "full", "reason": "lost", "confirm": "wrong name"})
			env.mustDo(400, "POST", "/api/v1/devices/"+dev.ID+"/actions/wipe", env.Token, map[string]any{"mode": "total", "reason": "lost", "confirm": sim.Name})

			// Selective wipe: the enrollment profile (and with it every
			// managed profile and app) is removed; the device checks out.
			wipe := env.action(t, env.Token, dev.ID, "wipe", map[string]any{"mode": "selective", "reason": "left the company", "confirm": sim.Name})
			if wipe[0].RequestType != "RemoveProfile" || wipe[0].Status != mdmd.CommandAcknowledged {
				t.Fatalf("selective wipe = %+v", wipe[0])
			}
			eventually(t, 10*time.Second, "check-out", func() bool {
				d, _ := env.srv.Store().GetDevice(ctx, dev.ID)
				return d.EnrollmentState == mdmd.EnrollmentUnenrolled
			})
			if st := sim.State(); st.Enrolled || len(st.Profiles) != 0 || st.Erased {
				t.Fatalf("device after selective wipe = %+v", st)
			}
			env.mustDo(409, "POST", "/api/v1/devices/"+dev.ID+"/actions/lock", helpdesk, map[string]any{})
			// Its old identity no longer authenticates.
			if _, err := sim.Connect(ctx); err == nil {
				t.Fatal("a checked-out identity still reaches the command endpoint")
			}

			// Full wipe of a device enrolled through a reusable link.
			reusable, _ := env.link(t, map[string]any{"one_time": false, "ownership": "personal"})
			sim2, dev2 := env.enroll(t, reusable, "00008110-000A1C2E3F4D0002", applesim.DefaultPosture)
			_, dev3 := env.enroll(t, reusable, "00008110-000A1C2E3F4D0003", applesim.DefaultPosture)
			if dev2.Ownership != mdmd.OwnershipPersonal || dev3.EnrollmentState != mdmd.EnrollmentEnrolled {
				t.Fatalf("reusable link devices: %+v %+v", dev2, dev3)
			}
			// A full wipe needs a second admin's approval before it is sent.
			erase := env.waitFinal(t, fullWipeApproved(t, env.testServer, dev2.ID, map[string]any{"mode": "full", "reason": "stolen", "confirm": sim2.Serial}))
			if erase[0].RequestType != "EraseDevice" || erase[0].Status != mdmd.CommandAcknowledged || !sim2.State().Erased {
				t.Fatalf("full wipe = %+v, device %+v", erase[0], sim2.State())
			}
			eventually(t, 5*time.Second, "wiped state", func() bool {
				d, _ := env.srv.Store().GetDevice(ctx, dev2.ID)
				return d.EnrollmentState == mdmd.EnrollmentWiped
			})
			// The audit entry follows the state change (the device's answer
			// is recorded first).
			actions := map[string]bool{}
			eventually(t, 5*time.Second, "the wipe audited", func() bool {
				var audit web.Page[mdmd.AuditEvent]
				env.mustDo(200, "GET", "/api/v1/audit?target="+dev2.ID, env.Token, nil).json(t, &audit)
				for _, e := range audit.Items {
					actions[e.Action] = true
				}
				return actions["device.wiped"]
			})
			for _, a := range []string{"device.authenticate", "device.enrolled", "device.wipe", "device.wiped"} {
				if !actions[a] {
					t.Errorf("audit lacks %s for the wiped device: %v", a, actions)
				}
			}

			// APNs 410: the token is marked invalid and the outcome recorded.
			sim3 := env.deviceByUDID("00008110-000A1C2E3F4D0003")
			env.apns.Unregister(sim3.PushToken())
			if err := env.srv.Commands().Push(ctx, dev3.ID); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "token invalidated", func() bool {
				e, _ := env.srv.Store().GetAppleEnrollment(ctx, dev3.ID)
				return !e.TokenValid && e.LastPushResult == mdmd.PushUnregistered
			})
			recs, _ := env.srv.Store().ListPushes(ctx, dev3.ID, 10)
			if len(recs) == 0 || recs[0].Status != 410 || recs[0].Result != mdmd.PushUnregistered {
				t.Fatalf("push log = %+v", recs)
			}
		})
	}
}

func (env *appleEnv) deviceByUDID(udid string) *applesim.Device {
	env.mu.Lock()
	defer env.mu.Unlock()
	for _, d := range env.devices {
		if d.UDID == udid {
			return d
		}
	}
	return nil
}
