// Package demo runs mdmd on its embedded default together with the
// in-tree fake APNs, the fake Android Management API and a simulated
// fleet of iPhones and Android devices with mixed posture that keep
// checking in, so that a newcomer sees live data and can lock and wipe
// simulated devices from the console or the API. Nothing leaves the
// machine: every service is on 127.0.0.1.
package demo

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/app"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/apple/fakeapns"
	"github.com/mdmd/mdmd/auth"
)

// Options size the demo.
type Options struct {
	DataDir  string
	Listen   string
	IPhones  int
	Androids int
	// CheckIn is how often each simulated device reports.
	CheckIn time.Duration
	// Ready, if set, is called once the fleet is enrolled, with the
	// server's URL and an admin API token.
	Ready func(url, token string)
	// Screenshot, if set, is where the dashboard is saved as a PNG once
	// the fleet has reported; the demo then ends.
	Screenshot string
}

// Run parses the demo's flags and runs it until ctx ends.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdmd-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{}
	fs.StringVar(&o.DataDir, "data-dir", "./mdmd-demo-data", "directory for the demo's database and keys")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.IntVar(&o.IPhones, "iphones", 50, "simulated iPhones")
	fs.IntVar(&o.Androids, "androids", 50, "simulated Android devices")
	fs.DurationVar(&o.CheckIn, "check-in", time.Minute, "how often each simulated device reports")
	fs.StringVar(&o.Screenshot, "screenshot", "", "save the console's dashboard as this PNG (needs /usr/bin/chromium) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Start(ctx, o, stdout, stderr)
}

// Start runs the demo until ctx ends.
func Start(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	if o.CheckIn <= 0 {
		o.CheckIn = time.Minute
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "demo")
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return err
	}
	apns := fakeapns.Start()
	defer apns.Close()
	caFile := filepath.Join(o.DataDir, "fake-apns-ca.pem")
	if err := apns.CAFile(caFile); err != nil {
		return err
	}
	amapi := fakeamapi.Start()
	defer amapi.Close()

	cfg, err := app.ParseConfig("mdmd-demo", []string{"--data-dir", o.DataDir, "--listen", o.Listen,
		"--apns-url", apns.URL(), "--apns-ca-file", caFile, "--amapi-endpoint", amapi.URL(),
		"--amapi-project", "mdmd-demo", "--amapi-pubsub-topic", "projects/mdmd-demo/topics/amapi",
		"--job-poll", "200ms", "--log-level", "error"}, func(string) string { return "" }, stderr)
	if err != nil {
		return err
	}
	srv := app.NewServer(cfg, stdout, stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return err
	}
	base := "http://" + srv.Addr().String()
	f := &fleet{base: base, apns: apns, amapi: amapi, log: log, devices: map[string]*applesim.Device{}}
	if f.token, err = adminToken(ctx, srv); err != nil {
		return err
	}
	f.trust = x509.NewCertPool()
	f.trust.AddCert(srv.Identities().CA.Cert)
	if err := f.setUp(ctx, o); err != nil {
		return fmt.Errorf("demo set-up: %w", err)
	}
	fmt.Fprintf(stdout, "\nDemo fleet: %d simulated iPhones and %d Android devices, reporting every %s.\n"+
		"  Demo API token (admin): %s\n", o.IPhones, o.Androids, o.CheckIn, f.token)
	if o.Ready != nil {
		o.Ready(base, f.token)
	}
	go f.keepReporting(ctx, o.CheckIn)
	if o.Screenshot != "" {
		// Let every device report and be evaluated first.
		time.Sleep(10 * time.Second)
		if err := screenshot(ctx, srv, base, o.Screenshot); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "dashboard saved to", o.Screenshot)
		cancel()
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// adminToken creates an admin API token for the demo's own calls.
func adminToken(ctx context.Context, srv *app.Server) (string, error) {
	secret, hash := auth.NewToken()
	t := &mdmd.APIToken{Name: fmt.Sprintf("demo-%d", time.Now().Unix()), Role: mdmd.RoleAdmin, Hash: hash,
		Prefix: auth.DisplayPrefix(secret), CreatedBy: "demo", ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}
	return secret, srv.Store().CreateAPIToken(ctx, t)
}

type fleet struct {
	base, token string
	apns        *fakeapns.Server
	amapi       *fakeamapi.Server
	trust       *x509.CertPool
	log         *slog.Logger

	mu      sync.Mutex
	devices map[string]*applesim.Device // by push token
	iphones []*applesim.Device
	android []androidDevice
}

type androidDevice struct {
	name    string
	posture fakeamapi.Posture
}

func (f *fleet) api(ctx context.Context, method, path string, in, out any) error {
	return f.call(ctx, f.token, method, path, in, out)
}

func (f *fleet) call(ctx context.Context, token, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// setUp configures APNs, binds an Android enterprise, creates policies and
// enrolls the fleet. On a second start with the same data directory the
// server keeps its state; the simulated devices are new.
func (f *fleet) setUp(ctx context.Context, o Options) error {
	const topic = "com.apple.mgmt.External.6d646d64-6465-6d6f-0000-000000000001"
	certPEM, keyPEM, err := fakeapns.PushCertificate(topic, 365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := f.api(ctx, "PUT", "/api/v1/apple/push-certificate", map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)}, nil); err != nil {
		return err
	}
	f.apns.OnPush(func(p fakeapns.Push) {
		f.mu.Lock()
		d := f.devices[p.Token]
		f.mu.Unlock()
		if d != nil {
			if _, err := d.Woken(context.Background()); err != nil {
				f.log.Warn("simulated iPhone could not connect", "udid", d.UDID, "err", err)
			}
		}
	})
	if err := f.bindAndroid(ctx); err != nil {
		return err
	}
	for _, p := range []map[string]any{
		{"name": "iOS zero trust", "platform": "ios", "is_default": true, "rules": map[string]any{
			"min_os_version": "18", "require_passcode": true, "require_encryption": true, "block_compromised": true,
			"max_threat_level": "medium", "check_in_validity_days": 7,
			"actions": []map[string]any{{"action": "mark", "after_days": 1}, {"action": "notify", "after_days": 0}}}},
		{"name": "Android zero trust", "platform": "android", "is_default": true, "rules": map[string]any{
			"min_os_version": "14", "max_patch_age_days": 90, "require_passcode": true, "require_encryption": true,
			"block_compromised": true, "require_secure_posture": true, "check_in_validity_days": 7,
			"actions": []map[string]any{{"action": "mark", "after_days": 1}, {"action": "notify", "after_days": 0}}}},
	} {
		if err := f.api(ctx, "POST", "/api/v1/compliance/policies", p, nil); err != nil && !isConflict(err) {
			return err
		}
	}
	var partner struct{ Secret string }
	if err := f.api(ctx, "POST", "/api/v1/tokens", map[string]any{"name": fmt.Sprintf("demo-mtd-%d", time.Now().Unix()),
		"role": "mtd_partner"}, &partner); err != nil {
		return err
	}
	if err := f.enrollIPhones(ctx, o.IPhones, partner.Secret); err != nil {
		return err
	}
	return f.enrollAndroid(ctx, o.Androids)
}

func isConflict(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(": 409 "))
}

func (f *fleet) bindAndroid(ctx context.Context) error {
	var cur struct {
		Name string `json:"name"`
	}
	if f.api(ctx, "GET", "/api/v1/android/enterprise", nil, &cur) == nil && cur.Name != "" {
		// Bound on an earlier start, to an earlier fake: bind this fake's.
		name := f.amapi.CreateEnterprise("Demo Corp")
		var ent struct {
			PushEndpoint string `json:"push_endpoint"`
		}
		if err := f.api(ctx, "PUT", "/api/v1/android/enterprise", map[string]any{"name": name}, &ent); err != nil {
			return err
		}
		f.amapi.SetPushEndpoint(ent.PushEndpoint)
		return nil
	}
	var signup struct {
		Name string `json:"signup_url_name"`
	}
	if err := f.api(ctx, "POST", "/api/v1/android/signup", map[string]any{}, &signup); err != nil {
		return err
	}
	tok, err := f.amapi.CompleteSignup(signup.Name)
	if err != nil {
		return err
	}
	var ent struct {
		PushEndpoint string `json:"push_endpoint"`
	}
	if err := f.api(ctx, "POST", "/api/v1/android/enterprise", map[string]any{"signup_url_name": signup.Name,
		"enterprise_token": tok, "display_name": "Demo Corp"}, &ent); err != nil {
		return err
	}
	f.amapi.SetPushEndpoint(ent.PushEndpoint)
	return nil
}

var people = []string{"ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hugo", "ines", "jon"}

// iPhonePosture gives device i its posture: most are healthy, some run an
// old iOS, lack a passcode or are not encrypted.
func iPhonePosture(i int) (applesim.Posture, string) {
	p := applesim.DefaultPosture
	switch i % 10 {
	case 3:
		p.OSVersion, p.BuildVersion = "17.6.1", "21G93"
		return p, "outdated iOS"
	case 6:
		p.PasscodePresent, p.PasscodeCompliant = false, false
		return p, "no passcode"
	case 8:
		p.EncryptionCaps = 0
		return p, "not encrypted"
	}
	return p, "healthy"
}

func (f *fleet) enrollIPhones(ctx context.Context, n int, partner string) error {
	var link struct {
		URL string `json:"url"`
	}
	if err := f.api(ctx, "POST", "/api/v1/enrollment-links", map[string]any{"one_time": false}, &link); err != nil {
		return err
	}
	run := time.Now().Unix() % 100000
	for i := range n {
		p, _ := iPhonePosture(i)
		udid := fmt.Sprintf("00008110-%05d%011d", run, i)
		d := applesim.New(udid, fmt.Sprintf("DMO%05d%04d", run, i), p)
		if err := d.Enroll(ctx, link.URL, f.trust); err != nil {
			return fmt.Errorf("enrolling iPhone %d: %w", i, err)
		}
		f.mu.Lock()
		f.devices[d.PushToken()] = d
		f.iphones = append(f.iphones, d)
		f.mu.Unlock()
		owner := people[i%len(people)] + "@example.com"
		var page struct{ Items []mdmd.Device }
		if err := f.api(ctx, "GET", "/api/v1/devices?q="+udid, nil, &page); err != nil || len(page.Items) != 1 {
			return fmt.Errorf("finding iPhone %d: %v", i, err)
		}
		id := page.Items[0].ID
		name := fmt.Sprintf("%s's iPhone", people[i%len(people)])
		if err := f.api(ctx, "PATCH", "/api/v1/devices/"+id, map[string]any{"name": name, "owner_user": owner}, nil); err != nil {
			return err
		}
		if err := f.api(ctx, "POST", "/api/v1/devices/"+id+"/actions/query", map[string]any{}, nil); err != nil {
			return err
		}
		// The MTD partner vouches for every iPhone; a few are at high
		// risk or jailbroken.
		report := map[string]any{"level": "low", "source": "Demo MTD"}
		switch i % 10 {
		case 4:
			report["level"] = "high"
		case 9:
			report["compromised"] = true
		}
		if err := f.call(ctx, partner, "PUT", "/api/v1/mtd/devices/"+id+"/threat", report, nil); err != nil {
			return err
		}
	}
	return nil
}

// androidPosture gives device i its posture: some have an old patch level,
// a few are rooted or unencrypted.
func androidPosture(i int) fakeamapi.Posture {
	p := fakeamapi.HealthyPosture
	p.Model = []string{"Pixel 9", "Galaxy S25", "Pixel 8a"}[i%3]
	p.Serial = fmt.Sprintf("ADMO%05d", i)
	switch i % 10 {
	case 2:
		p.SecurityPatchLevel = time.Now().AddDate(0, -7, 0).Format(time.DateOnly)
	case 5:
		p.DevicePosture, p.PostureRisks = "POTENTIALLY_COMPROMISED", []string{"COMPROMISED_OS"}
	case 7:
		p.Encrypted = false
	case 9:
		p.AndroidVersion, p.APILevel = "13", 33
	}
	return p
}

func (f *fleet) enrollAndroid(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	var tok struct {
		Value string `json:"value"`
	}
	if err := f.api(ctx, "POST", "/api/v1/android/enrollment-tokens", map[string]any{"kind": "fully_managed", "one_time": false}, &tok); err != nil {
		return err
	}
	for i := range n {
		p := androidPosture(i)
		name, err := f.amapi.Enroll(tok.Value, p)
		if err != nil {
			return fmt.Errorf("enrolling Android device %d: %w", i, err)
		}
		f.mu.Lock()
		f.android = append(f.android, androidDevice{name: name, posture: p})
		f.mu.Unlock()
	}
	return nil
}

// keepReporting has every simulated device report at about the check-in
// interval, spread out so that the load is even.
func (f *fleet) keepReporting(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every / 10)
	defer t.Stop()
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		iphones, android := append([]*applesim.Device(nil), f.iphones...), append([]androidDevice(nil), f.android...)
		f.mu.Unlock()
		for i, d := range iphones {
			if i%10 == round%10 {
				if _, err := d.Connect(ctx); err != nil && !errors.Is(err, context.Canceled) {
					f.log.Warn("simulated iPhone check-in failed", "udid", d.UDID, "err", err)
				}
			}
		}
		for i, d := range android {
			if i%10 == round%10 {
				if err := f.amapi.Report(d.name, d.posture); err != nil {
					f.log.Warn("simulated Android report failed", "name", d.name, "err", err)
				}
			}
		}
	}
}
