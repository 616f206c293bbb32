package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/app"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// startServer runs a real mdmd in-process and returns its URL and an
// admin token.
func startServer(t *testing.T) (*app.Server, string, string) {
	t.Helper()
	cfg, err := app.ParseConfig("mdmd", []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--database-url", storagetest.SQLiteURL(t), "--log-level", "error"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := app.NewServer(cfg, io.Discard, io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("mdmd did not start")
	}
	secret, hash := auth.NewToken()
	if err := srv.Store().CreateAPIToken(ctx, &mdmd.APIToken{Name: "cli-admin", Role: mdmd.RoleAdmin, Hash: hash,
		Prefix: auth.DisplayPrefix(secret), CreatedBy: "test", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return srv, "http://" + srv.Addr().String(), secret
}

// The daily jobs through the real API, each command with what it prints,
// and a token that can do no more than its role.
func TestCLI(t *testing.T) {
	srv, base, admin := startServer(t)
	ctx := context.Background()
	udid := "00008110-CLI000000001"
	dev := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "Ana's iPhone", SerialNumber: "CLI0001",
		Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: "ana@example.com"}
	if err := srv.Store().CreateDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	run := func(token string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		env := map[string]string{"MDMCTL_SERVER": base, "MDMCTL_TOKEN": token}
		err := Run(ctx, args, &out, &errOut, func(k string) string { return env[k] })
		return out.String(), err
	}
	must := func(token string, args ...string) string {
		t.Helper()
		out, err := run(token, args...)
		if err != nil {
			t.Fatalf("mdmctl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"devices", "list"}, []string{"Ana's iPhone", "CLI0001", "ana@example.com", "enrolled"}},
		{[]string{"devices", "list", "--platform", "android"}, []string{"PLATFORM"}},
		{[]string{"devices", "show", dev.ID}, []string{`"serial_number": "CLI0001"`, `"compliance": null`}},
		{[]string{"enroll-link", "--owner", "ben@example.com", "--one-time"}, []string{base + "/enroll/"}},
		{[]string{"tokens", "list"}, []string{"cli-admin", "admin"}},
	} {
		out := must(admin, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("mdmctl %s printed %q, want %q in it", strings.Join(tc.args, " "), out, w)
			}
		}
	}
	if out := must(admin, "devices", "list", "--platform", "android"); strings.Contains(out, "CLI0001") {
		t.Errorf("filtered list: %s", out)
	}

	viewer := strings.TrimSpace(must(admin, "tokens", "create", "--name", "read-only", "--role", "viewer", "--days", "1"))
	if !strings.HasPrefix(viewer, "mdmd_") {
		t.Fatalf("tokens create printed %q", viewer)
	}
	must(viewer, "devices", "list")
	var ae *APIError
	if _, err := run(viewer, "lock", dev.ID, "--message", "x"); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("a viewer locking: %v", err)
	}
	if _, err := run(viewer, "tokens", "create", "--name", "x", "--role", "admin"); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("a viewer creating an admin token: %v", err)
	}
	if _, err := run(admin, "wipe", dev.ID, "--mode", "selective", "--reason", "lost", "--confirm", "wrong name"); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("a wipe with the wrong confirmation: %v", err)
	}
	tokens := must(admin, "tokens", "list")
	var viewerID string
	for _, line := range strings.Split(tokens, "\n") {
		if strings.Contains(line, "read-only") {
			viewerID = strings.Fields(line)[0]
		}
	}
	must(admin, "tokens", "revoke", viewerID)
	if _, err := run(viewer, "devices", "list"); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("a revoked token: %v", err)
	}

	// Bulk: a lock of the filtered devices, its progress, the list; a
	// wipe needs the count typed back and waits for a second admin; a
	// waiting wipe is cancelled.
	out := must(admin, "bulk", "lock", "--q", "ana", "--platform", "ios", "--message", "call IT")
	if !strings.Contains(out, `"total": 1`) || !strings.Contains(out, `"state": "running"`) {
		t.Fatalf("bulk lock printed %s", out)
	}
	id := strings.SplitN(strings.SplitN(out, `"id": "`, 2)[1], `"`, 2)[0]
	if out := must(admin, "bulk", "show", id); !strings.Contains(out, `"progress"`) || !strings.Contains(out, `"message": "call IT"`) {
		t.Errorf("bulk show printed %s", out)
	}
	if out := must(admin, "bulk", "list"); !strings.Contains(out, id) || !strings.Contains(out, "lock") {
		t.Errorf("bulk list printed %s", out)
	}
	if _, err := run(admin, "bulk", "wipe", "--q", "ana", "--mode", "full", "--reason", "stolen", "--confirm", "7"); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("a bulk wipe with the wrong count: %v", err)
	}
	out = must(admin, "bulk", "wipe", "--q", "ana", "--mode", "full", "--reason", "stolen", "--confirm", "1")
	if !strings.Contains(out, `"state": "awaiting_approval"`) || !strings.Contains(out, `"approval_id"`) {
		t.Fatalf("bulk wipe printed %s", out)
	}
	wipeID := strings.SplitN(strings.SplitN(out, `"id": "`, 2)[1], `"`, 2)[0]
	if out := must(admin, "bulk", "cancel", wipeID, "--reason", "found it"); !strings.Contains(out, `"state": "cancelled"`) {
		t.Errorf("bulk cancel printed %s", out)
	}

	for _, bad := range [][]string{{}, {"frobnicate"}, {"devices"}, {"devices", "show"}, {"lock"}, {"bulk"}, {"bulk", "show"}, {"bulk", "cancel"}} {
		if _, err := run(admin, bad...); err == nil {
			t.Errorf("mdmctl %v succeeded", bad)
		}
	}
	if _, err := run("", "devices", "list"); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no token: %v", err)
	}
}
