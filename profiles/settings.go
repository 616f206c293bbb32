package profiles

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/mdmd/mdmd"
)

// Passcode is the passcode policy (com.apple.mobiledevice.passwordpolicy).
// Its zero values are mdmd's zero-trust baseline.
type Passcode struct {
	MinLength            int  `json:"min_length"`             // default 6
	RequireAlphanumeric  bool `json:"require_alphanumeric"`   // letters and digits
	MaxInactivityMinutes int  `json:"max_inactivity_minutes"` // auto-lock; default 5
	MaxFailedAttempts    int  `json:"max_failed_attempts"`    // then the device erases; default 10
	MaxPINAgeDays        int  `json:"max_pin_age_days"`       // 0 = no expiry
}

// Restrictions are device restrictions (com.apple.applicationaccess). Nil
// leaves the device's default.
type Restrictions struct {
	AllowCamera                     *bool `json:"allow_camera,omitempty"`
	AllowScreenShot                 *bool `json:"allow_screen_capture,omitempty"`
	AllowCloudBackup                *bool `json:"allow_cloud_backup,omitempty"`
	ForceEncryptedBackup            *bool `json:"force_encrypted_backup,omitempty"`
	AllowUntrustedTLSPrompt         *bool `json:"allow_untrusted_tls_prompt,omitempty"`
	AllowOpenFromManagedToUnmanaged *bool `json:"allow_open_managed_to_unmanaged,omitempty"`
}

// WiFi is a Wi-Fi network (com.apple.wifi.managed).
type WiFi struct {
	SSID     string `json:"ssid"`
	Security string `json:"security"` // WPA2 (default), WPA3, WPA, Any, None
	Password string `json:"password,omitempty"`
	AutoJoin *bool  `json:"auto_join,omitempty"`
	Hidden   bool   `json:"hidden,omitempty"`
}

// VPN is a per-app IKEv2 VPN (com.apple.vpn.managed.applayer): managed
// apps mapped to it, and the listed Safari domains, use the tunnel.
type VPN struct {
	Name             string   `json:"name"`
	Server           string   `json:"server"`
	RemoteIdentifier string   `json:"remote_identifier"`
	LocalIdentifier  string   `json:"local_identifier"`
	SharedSecret     string   `json:"shared_secret"`
	SafariDomains    []string `json:"safari_domains,omitempty"`
	// UUID is the VPN's VPNUUID, kept across updates: managed apps are
	// mapped to a per-app VPN by it.
	UUID string `json:"vpn_uuid,omitempty"`
}

func decodeSettings(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return mdmd.FieldError("settings", "%v", err)
	}
	return nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}$`)

// Build makes the payload of a typed profile from its settings and returns
// it with the settings as stored (defaults filled in).
func Build(kind mdmd.ProfileKind, identifier, name, org string, raw json.RawMessage) (payload []byte, settings json.RawMessage, err error) {
	var content any
	payloadType := ""
	switch kind {
	case mdmd.ProfilePasscode:
		var p Passcode
		if err := decodeSettings(raw, &p); err != nil {
			return nil, nil, err
		}
		if p.MinLength == 0 {
			p.MinLength = 6
		}
		if p.MaxInactivityMinutes == 0 {
			p.MaxInactivityMinutes = 5
		}
		if p.MaxFailedAttempts == 0 {
			p.MaxFailedAttempts = 10
		}
		switch {
		case p.MinLength < 4 || p.MinLength > 16:
			return nil, nil, mdmd.FieldError("min_length", "must be from 4 to 16")
		case p.MaxFailedAttempts < 2 || p.MaxFailedAttempts > 11:
			return nil, nil, mdmd.FieldError("max_failed_attempts", "must be from 2 to 11")
		case p.MaxInactivityMinutes < 1 || p.MaxInactivityMinutes > 15:
			return nil, nil, mdmd.FieldError("max_inactivity_minutes", "must be from 1 to 15")
		case p.MaxPINAgeDays < 0 || p.MaxPINAgeDays > 730:
			return nil, nil, mdmd.FieldError("max_pin_age_days", "must be from 0 to 730")
		}
		payloadType = "com.apple.mobiledevice.passwordpolicy"
		c := map[string]any{"forcePIN": true, "allowSimple": false, "minLength": p.MinLength,
			"maxInactivity": p.MaxInactivityMinutes, "maxFailedAttempts": p.MaxFailedAttempts, "requireAlphanumeric": p.RequireAlphanumeric}
		if p.MaxPINAgeDays > 0 {
			c["maxPINAgeInDays"] = p.MaxPINAgeDays
		}
		content, settings = c, mustJSON(p)
	case mdmd.ProfileRestrictions:
		var r Restrictions
		if err := decodeSettings(raw, &r); err != nil {
			return nil, nil, err
		}
		c := map[string]any{}
		for key, v := range map[string]*bool{"allowCamera": r.AllowCamera, "allowScreenShot": r.AllowScreenShot,
			"allowCloudBackup": r.AllowCloudBackup, "forceEncryptedBackup": r.ForceEncryptedBackup,
			"allowUntrustedTLSPrompt": r.AllowUntrustedTLSPrompt, "allowOpenFromManagedToUnmanaged": r.AllowOpenFromManagedToUnmanaged} {
			if v != nil {
				c[key] = *v
			}
		}
		if len(c) == 0 {
			return nil, nil, mdmd.FieldError("settings", "set at least one restriction")
		}
		payloadType, content, settings = "com.apple.applicationaccess", c, mustJSON(r)
	case mdmd.ProfileWiFi:
		var w WiFi
		if err := decodeSettings(raw, &w); err != nil {
			return nil, nil, err
		}
		if w.SSID == "" || len(w.SSID) > 32 {
			return nil, nil, mdmd.FieldError("ssid", "must be 1 to 32 bytes")
		}
		if w.Security == "" {
			w.Security = "WPA2"
		}
		switch w.Security {
		case "WPA", "WPA2", "WPA3", "Any":
			if len(w.Password) < 8 || len(w.Password) > 63 {
				return nil, nil, mdmd.FieldError("password", "must be 8 to 63 characters for %s", w.Security)
			}
		case "None":
			if w.Password != "" {
				return nil, nil, mdmd.FieldError("password", "an open network has no password")
			}
		default:
			return nil, nil, mdmd.FieldError("security", "must be WPA2, WPA3, WPA, Any or None, got %q", w.Security)
		}
		autoJoin := w.AutoJoin == nil || *w.AutoJoin
		c := map[string]any{"SSID_STR": w.SSID, "EncryptionType": w.Security, "AutoJoin": autoJoin, "HIDDEN_NETWORK": w.Hidden}
		if w.Password != "" {
			c["Password"] = w.Password
		}
		payloadType, content = "com.apple.wifi.managed", c
		w.Password = strings.Repeat("•", 8) // never echoed back
		settings = mustJSON(w)
	case mdmd.ProfileVPN:
		var v VPN
		if err := decodeSettings(raw, &v); err != nil {
			return nil, nil, err
		}
		if v.Name == "" || !hostRE.MatchString(v.Server) || v.RemoteIdentifier == "" || v.LocalIdentifier == "" || len(v.SharedSecret) < 8 {
			return nil, nil, mdmd.FieldError("settings", "name, server (a host name), remote and local identifiers and a shared secret of 8+ characters are required")
		}
		for _, d := range v.SafariDomains {
			if !hostRE.MatchString(d) {
				return nil, nil, mdmd.FieldError("safari_domains", "%q is not a domain", d)
			}
		}
		if v.UUID == "" {
			v.UUID = NewUUID()
		}
		c := map[string]any{"VPNType": "IKEv2", "UserDefinedName": v.Name, "VPNUUID": v.UUID,
			"IKEv2": map[string]any{"RemoteAddress": v.Server, "RemoteIdentifier": v.RemoteIdentifier,
				"LocalIdentifier": v.LocalIdentifier, "AuthenticationMethod": "SharedSecret", "SharedSecret": v.SharedSecret,
				"OnDemandEnabled": 1}}
		if len(v.SafariDomains) > 0 {
			c["SafariDomains"] = v.SafariDomains
		}
		payloadType, content = "com.apple.vpn.managed.applayer", c
		v.SharedSecret = strings.Repeat("•", 8)
		settings = mustJSON(v)
	default:
		return nil, nil, mdmd.FieldError("kind", "%q profiles are not built from settings", kind)
	}
	m := content.(map[string]any)
	m["PayloadType"], m["PayloadVersion"], m["PayloadIdentifier"], m["PayloadUUID"] = payloadType, 1, identifier+".payload", NewUUID()
	m["PayloadDisplayName"] = name
	p := Profile{Payload: Payload{PayloadIdentifier: identifier, PayloadUUID: NewUUID(), PayloadDisplayName: name,
		PayloadOrganization: org, PayloadDescription: "Managed by " + org}, PayloadContent: []any{m}}
	payload, err = p.Marshal()
	return payload, settings, err
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// MaxUpload bounds an uploaded .mobileconfig.
const MaxUpload = 1 << 20

// ParseUpload checks an uploaded .mobileconfig (plain XML, or signed CMS
// whose content is used) and returns its XML and PayloadIdentifier.
func ParseUpload(raw []byte) (xml []byte, identifier string, err error) {
	if len(raw) == 0 || len(raw) > MaxUpload {
		return nil, "", mdmd.FieldError("mobileconfig", "must be 1 byte to %d bytes", MaxUpload)
	}
	xml = raw
	if p7, perr := pkcs7.Parse(raw); perr == nil && len(p7.Content) > 0 {
		xml = p7.Content
	}
	var top struct {
		PayloadType       string
		PayloadIdentifier string
		PayloadUUID       string
		PayloadContent    []map[string]any
	}
	if err := plist.Unmarshal(xml, &top); err != nil {
		return nil, "", mdmd.FieldError("mobileconfig", "not a property list: %v", err)
	}
	if top.PayloadType != "Configuration" || top.PayloadIdentifier == "" || top.PayloadUUID == "" {
		return nil, "", mdmd.FieldError("mobileconfig", "not a configuration profile (PayloadType Configuration, PayloadIdentifier and PayloadUUID are required)")
	}
	if top.PayloadIdentifier == mdmd.AppleEnrollmentProfileID || strings.HasPrefix(top.PayloadIdentifier, mdmd.AppleEnrollmentProfileID+".") {
		return nil, "", mdmd.FieldError("mobileconfig", "identifier %s is reserved for the enrollment profile", top.PayloadIdentifier)
	}
	for i, p := range top.PayloadContent {
		switch p["PayloadType"] {
		case "com.apple.mdm", "com.apple.security.scep":
			return nil, "", mdmd.FieldError("mobileconfig", "payload %d is %v, which only the enrollment profile may carry", i, p["PayloadType"])
		}
	}
	return xml, top.PayloadIdentifier, nil
}

// Identifier makes the PayloadIdentifier of a typed profile.
func Identifier(id string) string { return fmt.Sprintf("io.mdmd.profile.%s", id) }
