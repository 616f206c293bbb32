package apns_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/apns"
	"github.com/mdmd/mdmd/apple/fakeapns"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// TestPushConcurrencyIsBounded pushes 40 devices through a slow APNs and
// checks that no more than the configured number of pushes were in flight.
func TestPushConcurrencyIsBounded(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.SQLiteURL(t), storage.Options{})
	var ids []string
	for i := 0; i < 40; i++ {
		udid := fmt.Sprintf("C-%02d", i)
		d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
		if err := st.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		tok := make([]byte, 32)
		rand.Read(tok)
		if _, err := st.DB().Exec(`INSERT INTO apple_enrollments (device_id, udid, cert_fingerprint, push_token, push_magic, token_valid, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'MAGIC', TRUE, $5, $5)`, d.ID, udid, udid, hex.EncodeToString(tok), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	fake := fakeapns.Start()
	defer fake.Close()
	fake.SetDelay(20 * time.Millisecond)
	box, _ := secret.New(bytes.Repeat([]byte{9}, 32))
	svc := apns.New(st, box, apns.Config{URL: fake.URL(), RootCAs: fake.RootCAs(), Concurrency: 4})
	if _, err := svc.Push(ctx, ids); !mdmd.IsCode(err, mdmd.EConflict) {
		t.Fatalf("push without a certificate: %v", err)
	}
	certPEM, keyPEM, _ := fakeapns.PushCertificate("com.apple.mgmt.External.bound", time.Hour*24*30)
	if _, err := svc.UploadPEM(ctx, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	recs, err := svc.Push(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, r := range recs {
		if r.Result == mdmd.PushSent {
			sent++
		}
	}
	if sent != 40 || len(fake.Pushes()) != 40 {
		t.Fatalf("sent %d, APNs accepted %d", sent, len(fake.Pushes()))
	}
	if m := fake.MaxInFlight(); m > 4 || m < 2 {
		t.Fatalf("max pushes in flight = %d, want at most 4 (and some concurrency)", m)
	}
	for _, p := range fake.Pushes() {
		if p.PushMagic != "MAGIC" || p.Topic != "com.apple.mgmt.External.bound" || p.PushType != "mdm" {
			t.Fatalf("push = %+v", p)
		}
	}
}
