package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/web"
)

type androidEnv struct {
	*testServer
	amapi *fakeamapi.Server
	push  string // mdmd's Pub/Sub push endpoint
}

// newAndroidEnv starts mdmd against the fake AMAPI and binds an enterprise
// through the sign-up flow.
func newAndroidEnv(t *testing.T, dbURL string) *androidEnv {
	t.Helper()
	fake := fakeamapi.Start()
	t.Cleanup(fake.Close)
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL, "--amapi-endpoint", fake.URL(),
		"--amapi-project", "mdmd-test", "--amapi-pubsub-topic", "projects/mdmd-test/topics/amapi", "--job-poll", "50ms")
	env := &androidEnv{testServer: ts, amapi: fake}
	var signup struct {
		URL  string `json:"signup_url"`
		Name string `json:"signup_url_name"`
	}
	ts.mustDo(200, "POST", "/api/v1/android/signup", ts.Token, map[string]any{}).json(t, &signup)
	// Google sends the admin back to the console's Android page, which
	// reads the enterprise token it appends.
	if !strings.HasPrefix(signup.URL, "https://") || signup.Name == "" || !strings.HasSuffix(signup.URL, "callbackUrl="+ts.URL+"/settings/android") {
		t.Fatalf("signup = %+v", signup)
	}
	token, err := fake.CompleteSignup(signup.Name)
	if err != nil {
		t.Fatal(err)
	}
	ts.mustDo(400, "POST", "/api/v1/android/enterprise", ts.Token, map[string]any{"signup_url_name": signup.Name, "enterprise_token": "wrong"})
	var ent struct {
		Name              string   `json:"name"`
		PubsubTopic       string   `json:"pubsub_topic"`
		NotificationTypes []string `json:"notification_types"`
		PushEndpoint      string   `json:"push_endpoint"`
	}
	ts.mustDo(201, "POST", "/api/v1/android/enterprise", ts.Token, map[string]any{"signup_url_name": signup.Name,
		"enterprise_token": token, "display_name": "Acme"}).json(t, &ent)
	if !strings.HasPrefix(ent.Name, "enterprises/") || ent.PubsubTopic != "projects/mdmd-test/topics/amapi" ||
		strings.Join(ent.NotificationTypes, ",") != "ENROLLMENT,STATUS_REPORT,COMMAND" || !strings.Contains(ent.PushEndpoint, "/android/pubsub/") {
		t.Fatalf("enterprise = %+v", ent)
	}
	env.push = ent.PushEndpoint
	fake.SetPushEndpoint(env.push)
	return env
}

type issued struct {
	Token  mdmd.AndroidToken `json:"token"`
	Value  string            `json:"value"`
	QRCode string            `json:"qr_code"`
	QRPNG  string            `json:"qr_png"`
}

func (env *androidEnv) token(t *testing.T, body map[string]any) issued {
	t.Helper()
	var out issued
	env.mustDo(201, "POST", "/api/v1/android/enrollment-tokens", env.Token, body).json(t, &out)
	return out
}

// enroll enrolls a simulated device and waits for mdmd to know it.
func (env *androidEnv) enroll(t *testing.T, value string, p fakeamapi.Posture) (string, *mdmd.Device) {
	t.Helper()
	name, err := env.amapi.Enroll(value, p)
	if err != nil {
		t.Fatal(err)
	}
	var dev *mdmd.Device
	eventually(t, 10*time.Second, "the enrollment notification", func() bool {
		d, err := env.srv.Store().GetDeviceByAMAPIName(context.Background(), name)
		dev = d
		return err == nil
	})
	return name, dev
}

func (env *androidEnv) posture(t *testing.T, id string) *mdmd.Posture {
	var v web.DeviceView
	env.mustDo(200, "GET", "/api/v1/devices/"+id, env.Token, nil).json(t, &v)
	return v.Posture
}

func TestAndroidEnrollmentAndStatusReports(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAndroidEnv(t, b.URL)
			ctx := context.Background()

			// A work-profile token for a personal phone, with its QR code.
			byod := env.token(t, map[string]any{"kind": "work_profile", "owner_user": "dana@example.com", "duration_hours": 48})
			var qr map[string]any
			if err := json.Unmarshal([]byte(byod.QRCode), &qr); err != nil || byod.Value == "" || byod.Token.Kind != mdmd.AndroidWorkProfile {
				t.Fatalf("token = %+v (%v)", byod, err)
			}
			png := env.mustDo(200, "GET", byod.QRPNG, env.Token, nil)
			if png.Header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(png.Body, []byte("\x89PNG")) {
				t.Fatal("the QR code is not a PNG")
			}
			personal, dev := env.enroll(t, byod.Value, fakeamapi.HealthyPosture)
			if dev.Platform != mdmd.PlatformAndroid || dev.Ownership != mdmd.OwnershipPersonal || dev.OwnerUser != "dana@example.com" ||
				dev.EnrollmentState != mdmd.EnrollmentEnrolled || dev.OSVersion != "15" || dev.Model != "Pixel 9" {
				t.Fatalf("work-profile device = %+v", dev)
			}
			eventually(t, 10*time.Second, "the first status report", func() bool { return env.posture(t, dev.ID) != nil })
			p := env.posture(t, dev.ID)
			if p.OSVersion != "15" || p.SecurityPatch != fakeamapi.HealthyPosture.SecurityPatchLevel || p.Encrypted == nil || !*p.Encrypted ||
				p.PasscodePresent == nil || !*p.PasscodePresent || p.Compromised == nil || *p.Compromised || !strings.Contains(string(p.Details), `"management_mode":"PROFILE_OWNER"`) {
				t.Fatalf("posture = %+v %s", p, p.Details)
			}
			ad, _ := env.srv.Store().GetAndroidDevice(ctx, dev.ID)
			if ad.TokenID != byod.Token.ID || ad.ManagementMode != "PROFILE_OWNER" || ad.AMAPIOwnership != "PERSONALLY_OWNED" {
				t.Fatalf("android device = %+v", ad)
			}

			// A fully managed company phone.
			corp := env.token(t, map[string]any{"kind": "fully_managed", "owner_user": "ops@example.com", "one_time": false})
			_, cdev := env.enroll(t, corp.Value, fakeamapi.HealthyPosture)
			if cdev.Ownership != mdmd.OwnershipCorporate || cdev.OwnerUser != "ops@example.com" {
				t.Fatalf("fully managed device = %+v", cdev)
			}
			if ad, _ := env.srv.Store().GetAndroidDevice(ctx, cdev.ID); ad.ManagementMode != "DEVICE_OWNER" {
				t.Fatalf("management mode = %s", ad.ManagementMode)
			}

			// The device's posture changes: rooted, old patch, no lock screen.
			bad := fakeamapi.HealthyPosture
			bad.DevicePosture, bad.PostureRisks = "POTENTIALLY_COMPROMISED", []string{"COMPROMISED_OS"}
			bad.SecurityPatchLevel, bad.DeviceSecure, bad.ADBEnabled = "2024-01-05", false, true
			bad.PolicyCompliant, bad.NonComplianceFields = false, []string{"passwordPolicies"}
			if err := env.amapi.Report(personal, bad); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the changed posture", func() bool {
				p := env.posture(t, dev.ID)
				return p.Compromised != nil && *p.Compromised
			})
			p = env.posture(t, dev.ID)
			if p.SecurityPatch != "2024-01-05" || *p.PasscodePresent || *p.PasscodeCompliant || !strings.Contains(string(p.Details), `"adb_enabled":true`) ||
				!strings.Contains(string(p.Details), "COMPROMISED_OS") {
				t.Fatalf("posture after the report = %+v %s", p, p.Details)
			}
			if ad, _ := env.srv.Store().GetAndroidDevice(ctx, dev.ID); ad.PolicyCompliant || !strings.Contains(string(ad.NonCompliance), "passwordPolicies") {
				t.Fatalf("policy compliance = %+v", ad)
			}
		})
	}
}

func TestAndroidPubSubBadInput(t *testing.T) { eachBackend(t, testAndroidPubSubBadInput) }

func testAndroidPubSubBadInput(t *testing.T, dbURL string) {
	env := newAndroidEnv(t, dbURL)
	ctx := context.Background()
	tok := env.token(t, map[string]any{"kind": "work_profile"})
	name, dev := env.enroll(t, tok.Value, fakeamapi.HealthyPosture)
	eventually(t, 10*time.Second, "posture", func() bool { return env.posture(t, dev.ID) != nil })
	eventually(t, 5*time.Second, "delivery to finish", func() bool { return env.amapi.Pending() == 0 })
	time.Sleep(100 * time.Millisecond)

	current, _ := env.amapi.Device(name)
	older := *current
	older.SoftwareInfo = &am.SoftwareInfo{AndroidVersion: "11", SecurityPatchLevel: "2021-01-01"}
	olderData, _ := json.Marshal(&older)
	stranger := *current
	stranger.Name = strings.Replace(current.Name, "/devices/", "/devices/9", 1)
	strangerData, _ := json.Marshal(&stranger)
	currentData, _ := json.Marshal(current)
	foreign := *current
	foreign.Name = "enterprises/LC0OTHER/devices/31337"
	foreignData, _ := json.Marshal(&foreign)
	wrongPush := env.push[:strings.LastIndex(env.push, "/")+1] + "not-the-secret"
	post := func(url string, body []byte) (int, string) {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	snapshot := func() string {
		d, _ := env.srv.Store().GetDevice(ctx, dev.ID)
		p, _ := env.srv.Store().GetPosture(ctx, dev.ID)
		ad, _ := env.srv.Store().GetAndroidDevice(ctx, dev.ID)
		n, _ := env.srv.Store().CountDevices(ctx, mdmd.DeviceFilter{})
		d.LastSeenAt, d.UpdatedAt = nil, time.Time{}
		b, _ := json.Marshal([]any{d, p.OSVersion, p.SecurityPatch, p.Compromised, ad.AppliedPolicyVersion, ad.LastPublishTime, n})
		return string(b)
	}
	// The same message twice: the second changes nothing.
	replay := fakeamapi.PushEnvelope("STATUS_REPORT", currentData, "replayed-1", time.Now())
	if status, body := post(env.push, replay); status != 200 || !strings.Contains(body, "applied") {
		t.Fatalf("first delivery = %d %s", status, body)
	}
	before := snapshot()
	old := time.Now().Add(-time.Hour)
	tests := []struct {
		name     string
		url      string
		body     []byte
		status   int
		mentions string
	}{
		{"wrong push token", wrongPush, fakeamapi.PushEnvelope("STATUS_REPORT", currentData, "m1", time.Now()), 403, "push token"},
		{"missing push token", strings.TrimSuffix(env.push, env.push[strings.LastIndex(env.push, "/")+1:]) + "x", fakeamapi.PushEnvelope("STATUS_REPORT", currentData, "m1", time.Now()), 403, "push token"},
		{"malformed JSON", env.push, []byte(`{"message": `), 400, "malformed"},
		{"malformed base64", env.push, []byte(`{"message":{"attributes":{"notificationType":"STATUS_REPORT"},"data":"%%%","messageId":"m2","publishTime":"2026-01-01T00:00:00Z"}}`), 400, "base64"},
		{"data not a device", env.push, fakeamapi.PushEnvelope("STATUS_REPORT", []byte(`{"name": 5}`), "m3", time.Now()), 400, "Device"},
		{"unknown notification type", env.push, fakeamapi.PushEnvelope("DEVICE_EXPLODED", currentData, "m4", time.Now()), 400, "unknown notification type"},
		{"no message ID", env.push, fakeamapi.PushEnvelope("STATUS_REPORT", currentData, "", time.Now()), 400, "messageId"},
		{"replayed message ID", env.push, replay, 200, "duplicate"},
		{"older report", env.push, fakeamapi.PushEnvelope("STATUS_REPORT", olderData, "m5", old), 200, "stale"},
		{"device mdmd never enrolled", env.push, fakeamapi.PushEnvelope("STATUS_REPORT", strangerData, "m6", time.Now()), 404, "no enrolled device"},
		{"another enterprise's device", env.push, fakeamapi.PushEnvelope("ENROLLMENT", foreignData, "m8", time.Now()), 200, "ignored"},
		{"result of an operation mdmd never issued", env.push, fakeamapi.PushEnvelope("COMMAND", []byte(`{"name":"`+current.Name+`/operations/999","done":true}`), "m9", time.Now()), 200, "ignored"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.url, tc.body)
			if status != tc.status || !strings.Contains(body, tc.mentions) {
				t.Fatalf("got %d %s; want %d mentioning %q", status, body, tc.status, tc.mentions)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("bad pushes changed stored state:\n%s\n%s", before, after)
	}
	if strings.Contains(env.Stderr.String(), env.push[strings.LastIndex(env.push, "/")+1:]) {
		t.Fatal("the push secret is in the logs")
	}
	// The refused report for an unknown device was not recorded: once that
	// device's enrollment arrives, the redelivered report applies.
	if status, _ := post(env.push, fakeamapi.PushEnvelope("ENROLLMENT", strangerData, "m7", time.Now())); status != 200 {
		t.Fatal("enrollment of the new device refused")
	}
	if status, body := post(env.push, fakeamapi.PushEnvelope("STATUS_REPORT", strangerData, "m6", time.Now())); status != 200 || !strings.Contains(body, "applied") {
		t.Fatalf("redelivered report = %d %s", status, body)
	}
	// An expired token serves no QR code.
	short := env.token(t, map[string]any{"kind": "work_profile", "duration_hours": 1})
	if _, err := env.srv.Store().DB().Exec("UPDATE android_tokens SET expires_at = $1 WHERE id = $2", time.Now().Add(-time.Minute).UTC(), short.Token.ID); err != nil {
		t.Fatal(err)
	}
	env.mustDo(409, "GET", "/api/v1/android/enrollment-tokens/"+short.Token.ID+"/qr.png", env.Token, nil)
	// Expired and revoked tokens serve no QR code; an unknown kind is refused.
	env.mustDo(400, "POST", "/api/v1/android/enrollment-tokens", env.Token, map[string]any{"kind": "dedicated"})
	env.mustDo(400, "POST", "/api/v1/android/enrollment-tokens", env.Token, map[string]any{"kind": "work_profile", "duration_hours": 100000})
	env.mustDo(200, "DELETE", "/api/v1/android/enrollment-tokens/"+tok.Token.ID, env.Token, nil)
	env.mustDo(409, "GET", "/api/v1/android/enrollment-tokens/"+tok.Token.ID+"/qr.png", env.Token, nil)
	if _, err := env.amapi.Enroll(tok.Value, fakeamapi.HealthyPosture); err == nil {
		t.Fatal("a revoked token still enrolls")
	}
}

func TestAndroidBindExistingAndDeletion(t *testing.T) { eachBackend(t, androidBindExistingAndDeletion) }

func androidBindExistingAndDeletion(t *testing.T, dbURL string) {
	fake := fakeamapi.Start()
	defer fake.Close()
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL, "--amapi-endpoint", fake.URL(), "--amapi-pubsub-topic", "projects/p/topics/t")
	ts.mustDo(409, "GET", "/api/v1/android/enterprise", ts.Token, nil)
	ts.mustDo(409, "POST", "/api/v1/android/signup", ts.Token, map[string]any{}) // no project configured
	ts.mustDo(400, "PUT", "/api/v1/android/enterprise", ts.Token, map[string]string{"name": "not-an-enterprise"})
	ts.mustDo(404, "PUT", "/api/v1/android/enterprise", ts.Token, map[string]string{"name": "enterprises/LC0NOPE"})
	name := fake.CreateEnterprise("Existing Co")
	var ent struct {
		Name         string `json:"name"`
		PubsubTopic  string `json:"pubsub_topic"`
		PushEndpoint string `json:"push_endpoint"`
	}
	ts.mustDo(200, "PUT", "/api/v1/android/enterprise", ts.Token, map[string]string{"name": name}).json(t, &ent)
	if ent.Name != name || ent.PubsubTopic != "projects/p/topics/t" {
		t.Fatalf("bound enterprise = %+v", ent)
	}
	fake.SetPushEndpoint(ent.PushEndpoint)
	var tok issued
	ts.mustDo(201, "POST", "/api/v1/android/enrollment-tokens", ts.Token, map[string]any{"kind": "fully_managed"}).json(t, &tok)
	dev, err := fake.Enroll(tok.Value, fakeamapi.HealthyPosture)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	eventually(t, 10*time.Second, "enrollment", func() bool {
		d, err := ts.srv.Store().GetDeviceByAMAPIName(context.Background(), dev)
		if err == nil {
			id = d.ID
		}
		return err == nil
	})
	// A one-time token enrolls once.
	if _, err := fake.Enroll(tok.Value, fakeamapi.HealthyPosture); err == nil {
		t.Fatal("a one-time token enrolled twice")
	}
	// AMAPI reports the device deleted (appliedState DELETED): unenrolled.
	c, _ := fake.Device(dev)
	c.AppliedState, c.LastStatusReportTime = "DELETED", time.Now().UTC().Format(time.RFC3339Nano)
	data, _ := json.Marshal(c)
	resp, err := http.Post(ent.PushEndpoint, "application/json", bytes.NewReader(fakeamapi.PushEnvelope("STATUS_REPORT", data, "del-1", time.Now().Add(time.Second))))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("deletion report: %v %v", resp, err)
	}
	d, _ := ts.srv.Store().GetDevice(context.Background(), id)
	if d.EnrollmentState != mdmd.EnrollmentUnenrolled {
		t.Fatalf("device after DELETED = %s", d.EnrollmentState)
	}
}
