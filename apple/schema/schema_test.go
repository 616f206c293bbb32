package schema

import (
	"strings"
	"testing"
)

// TestValidateCatchesMistakes makes sure the validator fails what it should.
func TestValidateCatchesMistakes(t *testing.T) {
	mdm := MustLoad("profiles/com.apple.mdm.yaml")
	good := map[string]any{"IdentityCertificateUUID": "1B2C3D4E-1111-2222-3333-444455556666", "Topic": "com.apple.mgmt.X",
		"ServerURL": "https://mdm.example.com/mdm", "SignMessage": true, "AccessRights": uint64(8191),
		"ServerCapabilities": []any{"com.apple.mdm.bootstraptoken"}}
	if errs := Validate(mdm.PayloadKeys, good, Options{}); len(errs) > 0 {
		t.Fatalf("a valid payload fails:%s", Join(errs))
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"unknown key", func(m map[string]any) { m["ServerUrl"] = "x" }, "not in the schema"},
		{"wrong type", func(m map[string]any) { m["SignMessage"] = "yes" }, "want a boolean"},
		{"missing required", func(m map[string]any) { delete(m, "Topic") }, "required key missing"},
		{"format", func(m map[string]any) { m["ServerURL"] = "http://insecure" }, "does not match"},
		{"rangelist in array", func(m map[string]any) { m["ServerCapabilities"] = []any{"com.apple.mdm.everything"} }, "is not one of"},
		{"integer as string", func(m map[string]any) { m["AccessRights"] = "8191" }, "want an integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]any{}
			for k, v := range good {
				m[k] = v
			}
			tc.edit(m)
			errs := Validate(mdm.PayloadKeys, m, Options{})
			if len(errs) == 0 || !strings.Contains(Join(errs), tc.want) {
				t.Fatalf("errors = %s, want %q", Join(errs), tc.want)
			}
		})
	}
	pw := MustLoad("profiles/com.apple.mobiledevice.passwordpolicy.yaml")
	if errs := Validate(pw.PayloadKeys, map[string]any{"maxFailedAttempts": uint64(99)}, Options{}); len(errs) == 0 {
		t.Fatal("out-of-range value accepted")
	}
}
