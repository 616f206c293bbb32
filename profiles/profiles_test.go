package profiles

import (
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd/apple/schema"
)

// validateProfile checks a profile against Apple's schemas: the top level,
// and each payload against the common keys plus its own.
func validateProfile(t *testing.T, xml []byte, payloadSchemas map[string]string) {
	t.Helper()
	var top map[string]any
	if err := plist.Unmarshal(xml, &top); err != nil {
		t.Fatal(err)
	}
	if errs := schema.Validate(schema.MustLoad("profiles/TopLevel.yaml").PayloadKeys, top, schema.Options{}); len(errs) > 0 {
		t.Fatalf("top level:%s", schema.Join(errs))
	}
	common := schema.MustLoad("profiles/CommonPayloadKeys.yaml").PayloadKeys
	content, _ := top["PayloadContent"].([]any)
	if len(content) == 0 {
		t.Fatal("no payloads")
	}
	for _, p := range content {
		payload := p.(map[string]any)
		typ, _ := payload["PayloadType"].(string)
		files, ok := payloadSchemas[typ]
		if !ok {
			t.Fatalf("no schema for payload type %s", typ)
		}
		// "a+b" validates against the union of two schemas (a per-app VPN
		// payload carries the VPN keys too).
		keys := append([]schema.Key{}, common...)
		for i, file := range strings.Split(files, "+") {
			doc := schema.MustLoad(file)
			if i == 0 && doc.Payload.PayloadType != typ {
				t.Fatalf("%s describes %s, not %s", file, doc.Payload.PayloadType, typ)
			}
			keys = append(keys, doc.PayloadKeys...)
		}
		if errs := schema.Validate(keys, payload, schema.Options{}); len(errs) > 0 {
			t.Fatalf("%s payload:%s", typ, schema.Join(errs))
		}
	}
}

func TestEnrollmentProfileMatchesAppleSchemas(t *testing.T) {
	xml, err := BuildEnrollment(Enrollment{Organization: "Acme", SCEPURL: "https://mdm.acme.test/scep",
		ServerURL: "https://mdm.acme.test/mdm/connect", CheckInURL: "https://mdm.acme.test/mdm/checkin",
		Challenge: "one-time", Topic: "com.apple.mgmt.External.abc", Subject: "device"})
	if err != nil {
		t.Fatal(err)
	}
	validateProfile(t, xml, map[string]string{
		"com.apple.security.scep": "profiles/com.apple.security.scep.yaml",
		"com.apple.mdm":           "profiles/com.apple.mdm.yaml",
	})
	var top struct {
		PayloadContent []map[string]any
	}
	plist.Unmarshal(xml, &top)
	scep, mdm := top.PayloadContent[0], top.PayloadContent[1]
	if mdm["IdentityCertificateUUID"] != scep["PayloadUUID"] || mdm["SignMessage"] != true || mdm["CheckOutWhenRemoved"] != true {
		t.Fatalf("MDM payload does not use the SCEP identity or lacks signing: %+v", mdm)
	}
	c := scep["PayloadContent"].(map[string]any)
	if c["Challenge"] != "one-time" || c["Keysize"] != uint64(2048) || c["Key Usage"] != uint64(5) {
		t.Fatalf("SCEP payload content = %+v", c)
	}
}

func TestEnrollmentProfileRefusesBadInput(t *testing.T) {
	base := Enrollment{Organization: "Acme", SCEPURL: "https://x/scep", ServerURL: "https://x/mdm", Challenge: "c", Topic: "com.apple.mgmt.External.abc"}
	tests := []struct {
		name string
		edit func(e *Enrollment)
	}{
		{"no topic", func(e *Enrollment) { e.Topic = "" }},
		{"not an MDM topic", func(e *Enrollment) { e.Topic = "com.example.app" }},
		{"no challenge", func(e *Enrollment) { e.Challenge = "" }},
	}
	for _, tc := range tests {
		e := base
		tc.edit(&e)
		if _, err := BuildEnrollment(e); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
