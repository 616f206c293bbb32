package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/commands"
)

// snapshot is everything a bad device request must leave alone.
func appleSnapshot(t *testing.T, env *appleEnv, ids ...string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, id := range ids {
		d, err := env.srv.Store().GetDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := env.srv.Store().GetAppleEnrollment(ctx, id)
		cmds, _, _ := env.srv.Store().ListCommands(ctx, mdmd.CommandFilter{DeviceID: id})
		// Last-seen is left out: an authenticated device that sends a bad
		// result was still seen.
		udid := *d.UDID
		d.LastSeenAt, d.UDID = nil, nil
		fmt.Fprintf(&b, "%+v %s|%s %s %s %v|", *d, udid, e.CertFingerprint, e.PushToken, e.PushMagic, e.TokenValid)
		for _, c := range cmds {
			fmt.Fprintf(&b, "%s %s %d %x|", c.ID, c.Status, c.Deliveries, c.Result)
		}
	}
	return b.String()
}

func rawDeviceRequest(t *testing.T, url, contentType string, body []byte, sig string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if sig != "" {
		req.Header.Set("Mdm-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func signWith(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey, body []byte) string {
	t.Helper()
	sig, err := apple.SignDetached(body, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func mustPlist(t *testing.T, v any) []byte {
	b, err := plist.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppleBadInputChangesNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL, "--max-body-bytes", "65536")
			ctx := context.Background()
			url, _ := env.link(t, map[string]any{"one_time": false})
			a, devA := env.enroll(t, url, "00008110-00000000000A0001", applesim.DefaultPosture)
			bdev, devB := env.enroll(t, url, "00008110-00000000000B0002", applesim.DefaultPosture)
			// B has a command waiting that A must not be able to touch.
			cmdsB, err := env.srv.Commands().EnqueueApple(ctx, devB.ID, "test", false, lockCmd())
			if err != nil {
				t.Fatal(err)
			}
			cmdB := cmdsB[0].ID

			// An identity that mdmd's CA never issued.
			rogueKey, _ := rsa.GenerateKey(rand.Reader, 2048)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: a.UDID},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
			der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rogueKey.PublicKey, rogueKey)
			rogue, _ := x509.ParseCertificate(der)

			checkin := a.CheckInURL()
			connect := a.ServerURL()
			const ctCheckin = "application/x-apple-aspen-mdm-checkin"
			tokenUpdateB := mustPlist(t, map[string]any{"MessageType": "TokenUpdate", "UDID": bdev.UDID, "Topic": env.topic,
				"Token": []byte("attacker-token-attacker-token-32"), "PushMagic": "EVIL"})
			tokenUpdateA := mustPlist(t, map[string]any{"MessageType": "TokenUpdate", "UDID": a.UDID, "Topic": env.topic,
				"Token": []byte("attacker-token-attacker-token-32"), "PushMagic": "EVIL"})
			ackBasA := mustPlist(t, map[string]any{"UDID": a.UDID, "Status": "Acknowledged", "CommandUUID": cmdB})
			ackBasB := mustPlist(t, map[string]any{"UDID": bdev.UDID, "Status": "Acknowledged", "CommandUUID": cmdB})
			garbage := make([]byte, 300)
			rand.Read(garbage)
			huge := append([]byte(`<?xml version="1.0"?><plist><dict><key>MessageType</key><string>`), bytes.Repeat([]byte("A"), 70000)...)
			signA := func(body []byte) string { return signWith(t, a.Cert(), a.Key(), body) }

			tests := []struct {
				name     string
				url, ct  string
				body     []byte
				sig      string
				status   int
				mentions string
			}{
				{"malformed plist", checkin, ctCheckin, []byte("<plist><dict><key>MessageType"), "", 400, "malformed"},
				{"binary garbage", checkin, ctCheckin, garbage, "", 400, "malformed"},
				{"wrong content type", checkin, "application/json", tokenUpdateA, "", 415, "Content-Type"},
				{"missing signature", checkin, ctCheckin, tokenUpdateA, "-", 403, "missing"},
				{"signature not base64", checkin, ctCheckin, tokenUpdateA, "%%%not base64%%%", 403, "base64"},
				{"signature not CMS", checkin, ctCheckin, tokenUpdateA, base64.StdEncoding.EncodeToString([]byte("hello")), 403, "CMS"},
				{"forged signer", checkin, ctCheckin, tokenUpdateA, signWith(t, rogue, rogueKey, tokenUpdateA), 403, "verify"},
				{"signature over another body", checkin, ctCheckin, tokenUpdateA, signA([]byte("something else")), 403, "verify"},
				{"another device's UDID", checkin, ctCheckin, tokenUpdateB, "", 403, "another device"},
				{"unknown message type", checkin, ctCheckin, mustPlist(t, map[string]any{"MessageType": "Reboot", "UDID": a.UDID}), "", 400, "unknown message type"},
				{"no UDID", checkin, ctCheckin, mustPlist(t, map[string]any{"MessageType": "TokenUpdate"}), "", 400, "UDID"},
				{"user enrollment", checkin, ctCheckin, mustPlist(t, map[string]any{"MessageType": "Authenticate", "EnrollmentID": "x"}), "", 400, "User Enrollment"},
				{"token update without token", checkin, ctCheckin, mustPlist(t, map[string]any{"MessageType": "TokenUpdate", "UDID": a.UDID}), "", 400, "Token"},
				{"oversized body", checkin, ctCheckin, huge, "", 413, "exceeds"},
				{"unknown command status", connect, "application/x-apple-aspen-mdm", mustPlist(t, map[string]any{"UDID": a.UDID, "Status": "Done"}), "", 400, "unknown command status"},
				{"result without CommandUUID", connect, "application/x-apple-aspen-mdm", mustPlist(t, map[string]any{"UDID": a.UDID, "Status": "Acknowledged"}), "", 400, "CommandUUID"},
				{"result for a command never sent to it", connect, "application/x-apple-aspen-mdm", ackBasA, "", 404, "not found"},
				{"result in another device's name", connect, "application/x-apple-aspen-mdm", ackBasB, "", 403, "another device"},
				{"garbage command report", connect, "application/x-apple-aspen-mdm", garbage, "", 400, "malformed"},
			}
			before := appleSnapshot(t, env, devA.ID, devB.ID)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					sig := tc.sig
					switch sig {
					case "":
						sig = signA(tc.body)
					case "-":
						sig = ""
					}
					status, body := rawDeviceRequest(t, tc.url, tc.ct, tc.body, sig)
					if status == 401 {
						t.Fatal("a device got 401, which would make it unenroll")
					}
					if status != tc.status || !strings.Contains(body, tc.mentions) {
						t.Fatalf("got %d %s; want %d mentioning %q", status, body, tc.status, tc.mentions)
					}
				})
			}
			if after := appleSnapshot(t, env, devA.ID, devB.ID); after != before {
				t.Fatalf("bad device requests changed stored state:\nbefore %s\nafter  %s", before, after)
			}
			// A repeated answer to a finished command (the device missed our
			// reply) is accepted and changes nothing.
			done, err := env.srv.Commands().EnqueueApple(ctx, devA.ID, "test", false, lockCmd())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			first, _ := env.srv.Store().GetCommand(ctx, done[0].ID)
			again := mustPlist(t, map[string]any{"UDID": a.UDID, "Status": "Error", "CommandUUID": done[0].ID})
			if status, body := rawDeviceRequest(t, connect, "application/x-apple-aspen-mdm", again, signA(again)); status != 200 {
				t.Fatalf("repeated answer = %d %s", status, body)
			}
			if now, _ := env.srv.Store().GetCommand(ctx, done[0].ID); now.Status != mdmd.CommandAcknowledged || string(now.Result) != string(first.Result) {
				t.Fatalf("a repeated answer changed the command: %s", now.Status)
			}
			// Both devices still work.
			if _, err := a.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			if n, err := bdev.Connect(ctx); err != nil || n != 1 {
				t.Fatalf("B's own connection: %d commands, %v", n, err)
			}
		})
	}
}

func lockCmd() commands.DeviceLock { return commands.DeviceLock{Message: "x"} }
