package app

import (
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
)

func TestAndroidPolicies(t *testing.T) { eachBackend(t, testAndroidPolicies) }

func testAndroidPolicies(t *testing.T, dbURL string) {
	env := newAndroidEnv(t, dbURL)
	var p mdmd.AndroidPolicy
	env.mustDo(200, "PUT", "/api/v1/android/policies/default", env.Token, map[string]any{}).json(t, &p)
	if p.Version != 1 || p.AMAPIName == "" {
		t.Fatalf("policy = %+v", p)
	}
	saved, ok := env.amapi.Policy(p.AMAPIName)
	if !ok || len(saved.PasswordPolicies) != 2 || saved.PasswordPolicies[0].PasswordMinimumLength != 6 ||
		saved.PasswordPolicies[0].MaximumFailedPasswordsForWipe != 10 || saved.EncryptionPolicy != "ENABLED_WITH_PASSWORD" ||
		saved.AdvancedSecurityOverrides.UntrustedAppsPolicy != "DISALLOW_INSTALL" ||
		saved.AdvancedSecurityOverrides.DeveloperSettings != "DEVELOPER_SETTINGS_DISABLED" ||
		!saved.StatusReportingSettings.SoftwareInfoEnabled || !saved.StatusReportingSettings.DeviceSettingsEnabled ||
		!saved.StatusReportingSettings.NetworkInfoEnabled {
		t.Fatalf("AMAPI policy = %+v", saved)
	}
	tok := env.token(t, map[string]any{"kind": "fully_managed"})
	name, dev := env.enroll(t, tok.Value, fakeamapi.HealthyPosture)
	view := func() map[string]any {
		var v map[string]any
		env.mustDo(200, "GET", "/api/v1/devices/"+dev.ID+"/android", env.Token, nil).json(t, &v)
		return v
	}
	eventually(t, 5*time.Second, "the device on policy 1", func() bool { return view()["policy_up_to_date"] == true })

	// A stricter policy: version 2; the device is behind until it reports.
	env.mustDo(200, "PUT", "/api/v1/android/policies/default", env.Token, map[string]any{"passcode_quality": "alphanumeric",
		"passcode_min_length": 10, "disable_camera": true, "disable_screen_capture": true, "min_api_level": 33}).json(t, &p)
	if p.Version != 2 {
		t.Fatalf("version after update = %d", p.Version)
	}
	if v := view(); v["policy_up_to_date"] != false || v["policy_version"] != 2.0 {
		t.Fatalf("device view = %+v", v)
	}
	if err := env.amapi.Report(name, fakeamapi.HealthyPosture); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the device on policy 2", func() bool { return view()["policy_up_to_date"] == true })
	saved, _ = env.amapi.Policy(p.AMAPIName)
	if saved.CameraAccess != "CAMERA_ACCESS_DISABLED" || !saved.ScreenCaptureDisabled || saved.MinimumApiLevel != 33 ||
		saved.PasswordPolicies[1].PasswordQuality != "ALPHANUMERIC" || saved.PasswordPolicies[1].PasswordScope != "SCOPE_PROFILE" {
		t.Fatalf("stricter AMAPI policy = %+v", saved)
	}

	// Invalid values: refused, and nothing is sent to AMAPI.
	before := env.amapi.Calls("policies.patch")
	for _, bad := range []map[string]any{
		{"passcode_quality": "emoji"},
		{"passcode_min_length": 2},
		{"max_failed_attempts": 1000},
		{"min_api_level": -1},
		{"allow_usb_everything": true},
	} {
		env.mustDo(400, "PUT", "/api/v1/android/policies/default", env.Token, bad)
	}
	env.mustDo(400, "PUT", "/api/v1/android/policies/bad%20id", env.Token, map[string]any{})
	if env.amapi.Calls("policies.patch") != before {
		t.Fatal("an invalid policy reached AMAPI")
	}
	var list struct {
		Items []mdmd.AndroidPolicy `json:"items"`
	}
	env.mustDo(200, "GET", "/api/v1/android/policies", env.Token, nil).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].Version != 2 {
		t.Fatalf("policies = %+v", list.Items)
	}
}
