package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/schema"
)

// TestAppleCommandsMatchAppleSchemas encodes every command mdmd sends and
// validates it against Apple's schema for that command.
func TestAppleCommandsMatchAppleSchemas(t *testing.T) {
	tests := []struct {
		cmd  AppleCommand
		file string
	}{
		{DeviceInformation{}, "commands/information.device.yaml"},
		{DeviceInformation{Queries: []string{"OSVersion", "SerialNumber"}}, "commands/information.device.yaml"},
		{SecurityInfo{}, "commands/information.security.yaml"},
		{ProfileList{ManagedOnly: true}, "commands/profile.list.yaml"},
		{InstalledApplicationList{ManagedAppsOnly: true}, "commands/application.installed.list.yaml"},
		{CertificateList{ManagedOnly: true}, "commands/certificate.list.yaml"},
		{DeviceLock{Message: "Lost phone", PhoneNumber: "+1 555 0100", PIN: "123456"}, "commands/device.lock.yaml"},
		{EraseDevice{PIN: "123456", PreserveDataPlan: true, DisallowProximitySetup: true}, "commands/device.erase.yaml"},
		{ClearPasscode{UnlockToken: []byte{1, 2, 3}}, "commands/passcode.clear.yaml"},
		{InstallProfile{Payload: []byte("<plist/>")}, "commands/profile.install.yaml"},
		{RemoveProfile{Identifier: "io.mdmd.enrollment"}, "commands/profile.remove.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.cmd.RequestType(), func(t *testing.T) {
			raw, err := EncodeApple("8C3E0B9A-1111-2222-3333-444455556666", tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			var env struct {
				CommandUUID string
				Command     map[string]any
			}
			if err := plist.Unmarshal(raw, &env); err != nil {
				t.Fatal(err)
			}
			doc := schema.MustLoad(tc.file)
			if env.CommandUUID == "" || env.Command["RequestType"] != doc.Payload.RequestType {
				t.Fatalf("RequestType %v, schema %s", env.Command["RequestType"], doc.Payload.RequestType)
			}
			delete(env.Command, "RequestType")
			if errs := schema.Validate(doc.PayloadKeys, env.Command, schema.Options{}); len(errs) > 0 {
				t.Fatalf("%s:%s", tc.file, schema.Join(errs))
			}
		})
	}
}

func TestAppleCommandValidation(t *testing.T) {
	tests := []struct {
		name string
		cmd  AppleCommand
	}{
		{"PIN not 6 digits", DeviceLock{PIN: "12ab"}},
		{"long message", DeviceLock{Message: strings.Repeat("x", 501)}},
		{"erase PIN", EraseDevice{PIN: "1"}},
		{"no unlock token", ClearPasscode{}},
		{"empty profile", InstallProfile{}},
		{"no identifier", RemoveProfile{Identifier: " "}},
	}
	for _, tc := range tests {
		if _, err := EncodeApple("X", tc.cmd); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func report(t *testing.T, v map[string]any) []byte {
	b, err := plist.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAppleReport(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name      string
		body      []byte
		status    mdmd.CommandStatus
		wantErr   string
		resultErr bool
		check     func(t *testing.T, r *AppleReport)
	}{
		{"idle", report(t, map[string]any{"UDID": "U", "Status": "Idle"}), "", "", false, nil},
		{"not now", report(t, map[string]any{"UDID": "U", "Status": "NotNow", "CommandUUID": "C"}), mdmd.CommandNotNow, "", false, nil},
		{"error chain", report(t, map[string]any{"UDID": "U", "Status": "Error", "CommandUUID": "C",
			"ErrorChain": []any{map[string]any{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain", "USEnglishDescription": "Nope"}}}),
			mdmd.CommandError, "", false, func(t *testing.T, r *AppleReport) {
				if r.ErrorText() != "MCMDMErrorDomain 12021: Nope" {
					t.Fatalf("ErrorText = %q", r.ErrorText())
				}
			}},
		{"format error", report(t, map[string]any{"UDID": "U", "Status": "CommandFormatError", "CommandUUID": "C"}), mdmd.CommandFormatError, "", false,
			func(t *testing.T, r *AppleReport) {
				if r.ErrorText() != "CommandFormatError" {
					t.Fatalf("ErrorText = %q", r.ErrorText())
				}
			}},
		{"security info", report(t, map[string]any{"UDID": "U", "Status": "Acknowledged", "CommandUUID": "C",
			"SecurityInfo": map[string]any{"HardwareEncryptionCaps": 3, "PasscodePresent": true, "PasscodeCompliant": true, "PasscodeCompliantWithProfiles": false}}),
			mdmd.CommandAcknowledged, "", false, func(t *testing.T, r *AppleReport) {
				p := r.Posture("d", time.Now())
				if p == nil || *p.PasscodePresent != yes || *p.PasscodeCompliant != no || *p.Encrypted != yes {
					t.Fatalf("posture = %+v", p)
				}
			}},
		{"device information", report(t, map[string]any{"UDID": "U", "Status": "Acknowledged", "CommandUUID": "C",
			"QueryResponses": map[string]any{"OSVersion": "17.5", "BuildVersion": "21F79", "IsSupervised": true, "SerialNumber": "F2L"}}),
			mdmd.CommandAcknowledged, "", false, func(t *testing.T, r *AppleReport) {
				p := r.Posture("d", time.Now())
				if p.OSVersion != "17.5" || *p.Supervised != yes || p.PasscodePresent != nil {
					t.Fatalf("posture = %+v", p)
				}
			}},
		{"undecodable result is kept, not fatal", report(t, map[string]any{"UDID": "U", "Status": "Acknowledged", "CommandUUID": "C",
			"SecurityInfo": "not a dictionary"}), mdmd.CommandAcknowledged, "", true, nil},
		{"result without posture", report(t, map[string]any{"UDID": "U", "Status": "Acknowledged", "CommandUUID": "C"}),
			mdmd.CommandAcknowledged, "", false, func(t *testing.T, r *AppleReport) {
				if r.Posture("d", time.Now()) != nil {
					t.Fatal("posture from nothing")
				}
			}},
		{"unknown status", report(t, map[string]any{"UDID": "U", "Status": "Finished", "CommandUUID": "C"}), "", "unknown command status", false, nil},
		{"missing command UUID", report(t, map[string]any{"UDID": "U", "Status": "Acknowledged"}), "", "CommandUUID", false, nil},
		{"not a plist", []byte("{\"Status\":\"Idle\"}"), "", "malformed plist", false, nil},
		{"status of the wrong type", report(t, map[string]any{"UDID": "U", "Status": 5}), "", "malformed plist", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, st, resErr, err := ParseAppleReport(tc.body)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !mdmd.IsCode(err, mdmd.EInvalid) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || st != tc.status || (resErr != nil) != tc.resultErr {
				t.Fatalf("status %q err %v resultErr %v", st, err, resErr)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}
