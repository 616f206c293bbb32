package android

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// PolicySettings are mdmd's Android settings, translated to an AMAPI
// Policy. Their zero values are mdmd's zero-trust baseline.
type PolicySettings struct {
	// PasscodeQuality is numeric, numeric_complex (default), alphabetic,
	// alphanumeric or complex.
	PasscodeQuality   string `json:"passcode_quality"`
	PasscodeMinLength int    `json:"passcode_min_length"` // default 6
	MaxFailedAttempts int    `json:"max_failed_attempts"` // then the device (or work profile) is wiped; default 10
	// RequireEncryption defaults to true.
	RequireEncryption *bool `json:"require_encryption,omitempty"`
	MinAPILevel       int   `json:"min_api_level,omitempty"`
	// AllowUntrustedApps permits sideloading (in the personal profile only
	// on a work-profile device).
	AllowUntrustedApps bool `json:"allow_untrusted_apps,omitempty"`
	// AllowDeveloperSettings permits developer options and USB debugging.
	AllowDeveloperSettings bool `json:"allow_developer_settings,omitempty"`
	DisableCamera          bool `json:"disable_camera,omitempty"`
	DisableScreenCapture   bool `json:"disable_screen_capture,omitempty"`
}

var passcodeQualities = map[string]string{"numeric": "NUMERIC", "numeric_complex": "NUMERIC_COMPLEX",
	"alphabetic": "ALPHABETIC", "alphanumeric": "ALPHANUMERIC", "complex": "COMPLEX"}

// BuildPolicy translates settings into an AMAPI Policy and returns the
// settings with defaults filled in.
func BuildPolicy(raw json.RawMessage) (*am.Policy, PolicySettings, error) {
	var ps PolicySettings
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if len(raw) > 0 {
		if err := dec.Decode(&ps); err != nil {
			return nil, ps, mdmd.FieldError("settings", "%v", err)
		}
	}
	if ps.PasscodeQuality == "" {
		ps.PasscodeQuality = "numeric_complex"
	}
	if ps.PasscodeMinLength == 0 {
		ps.PasscodeMinLength = 6
	}
	if ps.MaxFailedAttempts == 0 {
		ps.MaxFailedAttempts = 10
	}
	if ps.RequireEncryption == nil {
		yes := true
		ps.RequireEncryption = &yes
	}
	quality, ok := passcodeQualities[ps.PasscodeQuality]
	switch {
	case !ok:
		return nil, ps, mdmd.FieldError("passcode_quality", "must be numeric, numeric_complex, alphabetic, alphanumeric or complex, got %q", ps.PasscodeQuality)
	case ps.PasscodeMinLength < 4 || ps.PasscodeMinLength > 16:
		return nil, ps, mdmd.FieldError("passcode_min_length", "must be from 4 to 16")
	case ps.MaxFailedAttempts < 4 || ps.MaxFailedAttempts > 30:
		return nil, ps, mdmd.FieldError("max_failed_attempts", "must be from 4 to 30")
	case ps.MinAPILevel < 0 || ps.MinAPILevel > 100:
		return nil, ps, mdmd.FieldError("min_api_level", "must be from 0 to 100")
	}
	untrusted, dev, camera := "DISALLOW_INSTALL", "DEVELOPER_SETTINGS_DISABLED", "CAMERA_ACCESS_USER_CHOICE"
	if ps.AllowUntrustedApps {
		untrusted = "ALLOW_INSTALL_IN_PERSONAL_PROFILE_ONLY"
	}
	if ps.AllowDeveloperSettings {
		dev = "DEVELOPER_SETTINGS_ALLOWED"
	}
	if ps.DisableCamera {
		camera = "CAMERA_ACCESS_DISABLED"
	}
	pw := func(scope string) *am.PasswordRequirements {
		return &am.PasswordRequirements{PasswordScope: scope, PasswordQuality: quality,
			PasswordMinimumLength: int64(ps.PasscodeMinLength), MaximumFailedPasswordsForWipe: int64(ps.MaxFailedAttempts)}
	}
	p := &am.Policy{
		PasswordPolicies:          []*am.PasswordRequirements{pw("SCOPE_DEVICE"), pw("SCOPE_PROFILE")},
		MinimumApiLevel:           int64(ps.MinAPILevel),
		AdvancedSecurityOverrides: &am.AdvancedSecurityOverrides{UntrustedAppsPolicy: untrusted, DeveloperSettings: dev, GooglePlayProtectVerifyApps: "VERIFY_APPS_ENFORCED"},
		CameraAccess:              camera,
		ScreenCaptureDisabled:     ps.DisableScreenCapture,
		StatusReportingSettings: &am.StatusReportingSettings{SoftwareInfoEnabled: true, DeviceSettingsEnabled: true,
			NetworkInfoEnabled: true, HardwareStatusEnabled: true, MemoryInfoEnabled: true, PowerManagementEventsEnabled: true},
	}
	if *ps.RequireEncryption {
		p.EncryptionPolicy = "ENABLED_WITH_PASSWORD"
	}
	return p, ps, nil
}

// PolicyStore is what policies need from storage.
type PolicyStore interface {
	PutAndroidPolicy(ctx context.Context, p *mdmd.AndroidPolicy) error
	GetAndroidPolicy(ctx context.Context, id string) (*mdmd.AndroidPolicy, error)
	ListAndroidPolicies(ctx context.Context) ([]mdmd.AndroidPolicy, error)
	GetAndroidDevice(ctx context.Context, deviceID string) (*mdmd.AndroidDevice, error)
	GetAndroidPolicyByName(ctx context.Context, name string) (*mdmd.AndroidPolicy, error)
}

// PutPolicy saves a policy to AMAPI and records the version AMAPI gave it.
func (s *Service) PutPolicy(ctx context.Context, ps PolicyStore, id string, raw json.RawMessage, by string) (*mdmd.AndroidPolicy, error) {
	if !policyIDRE.MatchString(id) {
		return nil, mdmd.FieldError("id", "a policy ID is letters, digits, '-' and '_'")
	}
	pol, settings, err := BuildPolicy(raw)
	if err != nil {
		return nil, err
	}
	e, err := s.GetEnterprise(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	name := e.Name + "/policies/" + id
	saved, err := c.Enterprises.Policies.Patch(name, pol).Context(ctx).Do()
	if err != nil {
		return nil, amapiErr(err)
	}
	js, _ := json.Marshal(settings)
	out := &mdmd.AndroidPolicy{ID: id, AMAPIName: name, Settings: js, Version: saved.Version, UpdatedBy: by}
	return out, ps.PutAndroidPolicy(ctx, out)
}

// PolicyAPI adds the policy routes.
type PolicyAPI struct {
	Service *Service
	Store   PolicyStore
}

// RegisterAPI adds the Android policy and device-state routes.
func (a PolicyAPI) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("PUT", "/android/policies/{id}", mdmd.PermProfilesManage, func(w http.ResponseWriter, r *http.Request) error {
		var in json.RawMessage
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		p, err := a.Service.PutPolicy(r.Context(), a.Store, chi.URLParam(r, "id"), in, web.PrincipalFrom(r.Context()).Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "android.policy.save", "android_policy", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"version": p.Version})
		web.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	reg.Handle("GET", "/android/policies", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		ps, err := a.Store.ListAndroidPolicies(r.Context())
		if err != nil {
			return err
		}
		if ps == nil {
			ps = []mdmd.AndroidPolicy{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": ps})
		return nil
	})
	reg.Handle("GET", "/android/policies/{id}", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.Store.GetAndroidPolicy(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	// A device's Android state: its policy, the version it applied (and
	// whether that is the current one), and AMAPI's non-compliance details.
	reg.Handle("GET", "/devices/{id}/android", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		d, err := a.Store.GetAndroidDevice(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		view := map[string]any{"device": d}
		if p, err := a.Store.GetAndroidPolicyByName(r.Context(), d.PolicyName); err == nil {
			view["policy_version"] = p.Version
			view["policy_up_to_date"] = d.AppliedPolicyVersion >= p.Version
		}
		web.WriteJSON(w, http.StatusOK, view)
		return nil
	})
}
