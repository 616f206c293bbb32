package profiles

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
)

// TestVPNKeepsItsUUID: managed apps are mapped to a per-app VPN by its
// VPNUUID, so an update must not change it.
func TestVPNKeepsItsUUID(t *testing.T) {
	s := &Service{org: "Acme"}
	settings := json.RawMessage(`{"name":"Corp","server":"vpn.example.com","remote_identifier":"r","local_identifier":"l","shared_secret":"s3cret-s3cret"}`)
	p := &mdmd.Profile{ID: "p1", Identifier: Identifier("p1"), Name: "VPN", Kind: mdmd.ProfileVPN}
	uuidOf := func() string {
		var top struct{ PayloadContent []map[string]any }
		if err := plist.Unmarshal(p.Payload, &top); err != nil {
			t.Fatal(err)
		}
		return top.PayloadContent[0]["VPNUUID"].(string)
	}
	if err := s.build(p, Input{Settings: settings}); err != nil {
		t.Fatal(err)
	}
	first := uuidOf()
	if err := s.build(p, Input{Settings: json.RawMessage(strings.Replace(string(settings), "vpn.example.com", "vpn2.example.com", 1))}); err != nil {
		t.Fatal(err)
	}
	if got := uuidOf(); got != first || !strings.Contains(string(p.Payload), "vpn2.example.com") {
		t.Fatalf("VPNUUID %s -> %s after an update", first, got)
	}
	if strings.Contains(string(p.Settings), "s3cret") {
		t.Fatal("the shared secret is kept readable in the settings")
	}
}
