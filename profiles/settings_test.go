package profiles

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
)

func TestTypedProfilesMatchAppleSchemas(t *testing.T) {
	tests := []struct {
		kind     mdmd.ProfileKind
		settings string
		schemas  map[string]string
		check    func(t *testing.T, settings json.RawMessage)
	}{
		{mdmd.ProfilePasscode, `{}`, map[string]string{"com.apple.mobiledevice.passwordpolicy": "profiles/com.apple.mobiledevice.passwordpolicy.yaml"},
			func(t *testing.T, s json.RawMessage) {
				var p Passcode
				json.Unmarshal(s, &p)
				if p.MinLength != 6 || p.MaxFailedAttempts != 10 || p.MaxInactivityMinutes != 5 {
					t.Fatalf("baseline passcode = %+v", p)
				}
			}},
		{mdmd.ProfilePasscode, `{"min_length":8,"require_alphanumeric":true,"max_inactivity_minutes":2,"max_failed_attempts":6,"max_pin_age_days":90}`,
			map[string]string{"com.apple.mobiledevice.passwordpolicy": "profiles/com.apple.mobiledevice.passwordpolicy.yaml"}, nil},
		{mdmd.ProfileRestrictions, `{"allow_camera":false,"allow_screen_capture":false,"force_encrypted_backup":true,"allow_untrusted_tls_prompt":false,"allow_cloud_backup":false,"allow_open_managed_to_unmanaged":false}`,
			map[string]string{"com.apple.applicationaccess": "profiles/com.apple.applicationaccess.yaml"}, nil},
		{mdmd.ProfileWiFi, `{"ssid":"Corp","security":"WPA3","password":"correct horse"}`,
			map[string]string{"com.apple.wifi.managed": "profiles/com.apple.wifi.managed.yaml"},
			func(t *testing.T, s json.RawMessage) {
				if strings.Contains(string(s), "correct horse") {
					t.Fatal("the Wi-Fi password is echoed in the stored settings")
				}
			}},
		{mdmd.ProfileWiFi, `{"ssid":"Guest","security":"None"}`, map[string]string{"com.apple.wifi.managed": "profiles/com.apple.wifi.managed.yaml"}, nil},
		{mdmd.ProfileVPN, `{"name":"Corp VPN","server":"vpn.example.com","remote_identifier":"vpn.example.com","local_identifier":"device","shared_secret":"s3cret-s3cret","safari_domains":["intranet.example.com"]}`,
			map[string]string{"com.apple.vpn.managed.applayer": "profiles/com.apple.vpn.managed.applayer.yaml+profiles/com.apple.vpn.managed.yaml"}, nil},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			xml, settings, err := Build(tc.kind, "io.mdmd.profile.test", "Test", "Acme", json.RawMessage(tc.settings))
			if err != nil {
				t.Fatal(err)
			}
			validateProfile(t, xml, tc.schemas)
			if tc.check != nil {
				tc.check(t, settings)
			}
		})
	}
}

func TestTypedProfileRefusals(t *testing.T) {
	tests := []struct {
		kind     mdmd.ProfileKind
		settings string
		field    string
	}{
		{mdmd.ProfilePasscode, `{"min_length":2}`, "min_length"},
		{mdmd.ProfilePasscode, `{"max_failed_attempts":50}`, "max_failed_attempts"},
		{mdmd.ProfilePasscode, `{"min_lenght":6}`, "settings"},
		{mdmd.ProfilePasscode, `{"min_length":"six"}`, "settings"},
		{mdmd.ProfileRestrictions, `{}`, "settings"},
		{mdmd.ProfileWiFi, `{"ssid":""}`, "ssid"},
		{mdmd.ProfileWiFi, `{"ssid":"x","security":"WPA2","password":"short"}`, "password"},
		{mdmd.ProfileWiFi, `{"ssid":"x","security":"WEP2","password":"longenough"}`, "security"},
		{mdmd.ProfileVPN, `{"name":"v","server":"bad host!","remote_identifier":"r","local_identifier":"l","shared_secret":"12345678"}`, "settings"},
		{mdmd.ProfileCustom, `{}`, "kind"},
	}
	for _, tc := range tests {
		_, _, err := Build(tc.kind, "io.mdmd.profile.x", "X", "Acme", json.RawMessage(tc.settings))
		var me *mdmd.Error
		if err == nil || !asError(err, &me) || me.Field != tc.field {
			t.Errorf("%s %s: err = %v, want field %s", tc.kind, tc.settings, err, tc.field)
		}
	}
}

func asError(err error, target **mdmd.Error) bool {
	e, ok := err.(*mdmd.Error)
	*target = e
	return ok
}

func TestParseUpload(t *testing.T) {
	good, _, err := Build(mdmd.ProfilePasscode, "com.acme.passcode", "Acme passcode", "Acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	signed, err := apple.Sign(good, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	enrollment, _ := BuildEnrollment(Enrollment{Organization: "A", SCEPURL: "https://a/scep", ServerURL: "https://a/mdm",
		Challenge: "c", Topic: "com.apple.mgmt.External.x"})
	withMDM := strings.Replace(string(enrollment), "io.mdmd.enrollment</string>", "com.acme.sneaky</string>", 1)
	tests := []struct {
		name    string
		raw     []byte
		wantID  string
		wantErr string
	}{
		{"plain XML", good, "com.acme.passcode", ""},
		{"signed CMS", signed, "com.acme.passcode", ""},
		{"not a plist", []byte("hello"), "", "not a property list"},
		{"empty", nil, "", "must be"},
		{"not a configuration", []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>PayloadType</key><string>com.apple.wifi.managed</string></dict></plist>`), "", "not a configuration profile"},
		{"reserved identifier", enrollment, "", "reserved"},
		{"MDM payload smuggled in", []byte(withMDM), "", "only the enrollment profile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xml, id, err := ParseUpload(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.wantID || !strings.Contains(string(xml), "<plist") {
				t.Fatalf("ParseUpload = %q, %v", id, err)
			}
		})
	}
}
