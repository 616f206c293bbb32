package app

import (
	"bytes"
	"context"
	"testing"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd/apple/applesim"
)

// TestCheckinMessages covers the check-in messages beyond enrollment.
func TestCheckinMessages(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()
	url, _ := env.link(t, map[string]any{"one_time": true})
	sim, dev := env.enroll(t, url, "00008110-0000000000B10001", applesim.DefaultPosture)

	get := func() []byte {
		status, body, err := sim.CheckIn(ctx, map[string]any{"MessageType": "GetBootstrapToken", "UDID": sim.UDID})
		if err != nil || status != 200 {
			t.Fatalf("GetBootstrapToken: %d %v", status, err)
		}
		var out struct{ BootstrapToken []byte }
		if err := plist.Unmarshal(body, &out); err != nil {
			t.Fatalf("GetBootstrapToken answer %q: %v", body, err)
		}
		return out.BootstrapToken
	}
	if tok := get(); len(tok) != 0 {
		t.Fatalf("bootstrap token before any was set: %x", tok)
	}
	secretToken := []byte("bootstrap-token-escrowed-by-the-device")
	if status, body, err := sim.CheckIn(ctx, map[string]any{"MessageType": "SetBootstrapToken", "UDID": sim.UDID, "BootstrapToken": secretToken}); err != nil || status != 200 {
		t.Fatalf("SetBootstrapToken: %d %s %v", status, body, err)
	}
	if tok := get(); !bytes.Equal(tok, secretToken) {
		t.Fatalf("escrowed token came back as %q", tok)
	}
	e, _ := env.srv.Store().GetAppleEnrollment(ctx, dev.ID)
	if bytes.Contains(e.BootstrapSealed, secretToken) {
		t.Fatal("the bootstrap token is stored unsealed")
	}

	tests := []struct {
		name   string
		msg    map[string]any
		status int
	}{
		{"UserAuthenticate is declined", map[string]any{"MessageType": "UserAuthenticate", "UDID": sim.UDID, "UserID": "u"}, 410},
		{"user channel TokenUpdate is declined", map[string]any{"MessageType": "TokenUpdate", "UDID": sim.UDID, "UserID": "u", "Topic": env.topic, "Token": []byte("t"), "PushMagic": "m"}, 410},
		{"DeclarativeManagement is not supported", map[string]any{"MessageType": "DeclarativeManagement", "UDID": sim.UDID, "Endpoint": "tokens"}, 400},
		{"GetToken is not supported", map[string]any{"MessageType": "GetToken", "UDID": sim.UDID, "TokenServiceType": "com.apple.maid"}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := sim.CheckIn(ctx, tc.msg)
			if err != nil || status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, body, tc.status)
			}
		})
	}
	// None of that disturbed the enrollment.
	if e2, _ := env.srv.Store().GetAppleEnrollment(ctx, dev.ID); !e2.TokenValid || e2.PushToken != e.PushToken {
		t.Fatalf("enrollment changed: %+v", e2)
	}
	if _, err := sim.Connect(ctx); err != nil {
		t.Fatal(err)
	}
}
