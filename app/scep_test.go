package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/apple/applesim"
)

func TestSCEPChallengesAndRenewal(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL)
			ctx := context.Background()
			_, linkID := env.link(t, map[string]any{"one_time": false, "owner_user": "ops@example.com"})

			// Interoperability: the unsigned profile for tooling, installed
			// as third-party simulators do, over plain HTTP on loopback.
			xml := env.mustDo(200, "GET", "/api/v1/enrollment-links/"+linkID+"/profile", env.Token, nil).Body
			var prof map[string]any
			if err := plist.Unmarshal(xml, &prof); err != nil || prof["PayloadType"] != "Configuration" {
				t.Fatalf("unsigned profile: %v %v", err, prof["PayloadType"])
			}
			first := applesim.New("00008110-0000000000C00001", "SNC1", applesim.DefaultPosture)
			if err := first.Install(ctx, xml); err != nil {
				t.Fatalf("install unsigned profile: %v", err)
			}
			// The same challenge again: refused, and nothing is enrolled.
			replay := applesim.New("00008110-0000000000C00002", "SNC2", applesim.DefaultPosture)
			err := replay.Install(ctx, xml)
			if err == nil || !strings.Contains(err.Error(), "SCEP refused") {
				t.Fatalf("replayed challenge: %v", err)
			}
			if _, err := env.srv.Store().GetDeviceByUDID(ctx, replay.UDID); !mdmd.IsCode(err, mdmd.ENotFound) {
				t.Fatalf("replayed challenge enrolled a device: %v", err)
			}
			// An expired challenge is refused too.
			xml2 := env.mustDo(200, "GET", "/api/v1/enrollment-links/"+linkID+"/profile", env.Token, nil).Body
			if _, err := env.srv.Store().DB().Exec("UPDATE scep_challenges SET expires_at = $1 WHERE used_at IS NULL",
				time.Now().Add(-time.Minute).UTC()); err != nil {
				t.Fatal(err)
			}
			late := applesim.New("00008110-0000000000C00003", "SNC3", applesim.DefaultPosture)
			if err := late.Install(ctx, xml2); err == nil || !strings.Contains(err.Error(), "SCEP refused") {
				t.Fatalf("expired challenge: %v", err)
			}
			// A revoked link serves no profile.
			env.mustDo(200, "DELETE", "/api/v1/enrollment-links/"+linkID, env.Token, nil)
			env.mustDo(403, "GET", "/api/v1/enrollment-links/"+linkID+"/profile", env.Token, nil)

			// Capabilities, CA certificate, and garbage.
			caps := get(t, first.ServerURL(), "/scep?operation=GetCACaps")
			for _, c := range []string{"Renewal", "SHA-256", "AES", "POSTPKIOperation"} {
				if !strings.Contains(caps, c) {
					t.Errorf("GetCACaps lacks %s: %q", c, caps)
				}
			}
			resp, err := http.Post(baseOf(first.ServerURL())+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader([]byte("garbage")))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("garbage PKIOperation = %d", resp.StatusCode)
			}

			// Renewal: signed by the current identity; the new certificate
			// takes over and the old one stops working.
			old, oldKey := first.Cert(), first.Key()
			if err := first.Renew(ctx); err != nil {
				t.Fatalf("renew: %v", err)
			}
			if first.Cert().Equal(old) {
				t.Fatal("renewal returned the same certificate")
			}
			if _, err := first.Connect(ctx); err != nil {
				t.Fatalf("connect with renewed identity: %v", err)
			}
			dev, _ := env.srv.Store().GetDeviceByUDID(ctx, first.UDID)
			e, _ := env.srv.Store().GetAppleEnrollment(ctx, dev.ID)
			if e.CertFingerprint != apple.CertFingerprint(first.Cert()) {
				t.Fatal("enrollment not moved to the renewed certificate")
			}
			body := []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>UDID</key><string>` + first.UDID + `</string><key>Status</key><string>Idle</string></dict></plist>`)
			if status, msg := rawDeviceRequest(t, first.ServerURL(), "application/x-apple-aspen-mdm", body, signWith(t, old, oldKey, body)); status != 403 {
				t.Fatalf("the replaced identity still works: %d %s", status, msg)
			}
		})
	}
}

func get(t *testing.T, base, path string) string {
	t.Helper()
	resp, err := http.Get(baseOf(base) + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

func baseOf(u string) string { return u[:strings.Index(u[len("http://"):], "/")+len("http://")] }
