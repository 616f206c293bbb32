package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/internal/ssfrx"
)

// hookReceiver is an identity provider's webhook endpoint, written from
// the Standard Webhooks convention alone: it checks the HMAC-SHA256 over
// "id.timestamp.body" itself, and can play dead.
type hookReceiver struct {
	secret string
	down   atomic.Bool
	tries  atomic.Int64
	mu     sync.Mutex
	got    []hookMessage
	bad    []string
}

type hookMessage struct {
	ID   string
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.tries.Add(1)
	if h.down.Load() {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := err == nil && slices.ContainsFunc(strings.Fields(r.Header.Get("webhook-signature")), func(s string) bool {
		return hmac.Equal([]byte(s), []byte(want))
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ok {
		h.bad = append(h.bad, id)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m hookMessage
	_ = json.Unmarshal(body, &m)
	m.ID = id
	h.got = append(h.got, m)
	w.WriteHeader(http.StatusNoContent)
}

// has reports whether a compliance change of the device arrived; from
// "*" matches any previous state.
func (h *hookReceiver) has(deviceID, from, to string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.got {
		var d mdmd.ComplianceChangedData
		if m.Type == mdmd.EventComplianceChanged && json.Unmarshal(m.Data, &d) == nil &&
			d.DeviceID == deviceID && (from == "*" || d.PreviousState == from) && d.CurrentState == to {
			return true
		}
	}
	return false
}

// verifyToken checks a compliance token as a relying party would offline:
// signature against the published JWKS only, typ, audience, time window
// and the cnf binding to the certificate the device presents.
func verifyToken(token string, jwks jose.JSONWebKeySet, aud string, cert *x509.Certificate, now time.Time) (map[string]any, error) {
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, err
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "device-compliance+jwt" {
		return nil, fmt.Errorf("typ %v", h.ExtraHeaders["typ"])
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		return nil, fmt.Errorf("kid %q is not in the JWKS", h.KeyID)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return nil, err
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	num := func(k string) time.Time { f, _ := c[k].(float64); return time.Unix(int64(f), 0) }
	switch {
	case c["aud"] != aud:
		return nil, fmt.Errorf("token for audience %v", c["aud"])
	case now.Before(num("nbf")):
		return nil, fmt.Errorf("not yet valid")
	case !now.Before(num("exp")):
		return nil, fmt.Errorf("expired at %s", num("exp"))
	case num("exp").Sub(num("iat")) > time.Hour:
		return nil, fmt.Errorf("valid for %s, more than an hour", num("exp").Sub(num("iat")))
	}
	sum := sha256.Sum256(cert.Raw)
	cnf, _ := c["cnf"].(map[string]any)
	if cnf["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("cnf %v does not bind the presented certificate", cnf)
	}
	return c, nil
}

// The whole conditional-access path with a simulated iPhone on every
// backend: each posture change (old OS, passcode removed, jailbreak and
// high threat from the MTD partner, silence past the validity period)
// flips the state; a signed webhook, a pushed SET and a polled SET follow
// each change, to receivers that share no code with mdmd; a compliance
// token verifies offline and is refused expired, for another audience or
// with another certificate. Receivers that are down lose nothing.
func TestConditionalAccess(t *testing.T) { eachBackend(t, testConditionalAccess) }

func testConditionalAccess(t *testing.T, dbURL string) {
	env := newAppleEnv(t, dbURL, "--allow-private-receivers", "true")
	st, ctx := env.srv.Store(), context.Background()
	fx := &fixture{testServer: env.testServer}
	const owner, rpAudience = "ana@example.com", "https://idp.example.com"

	env.mustDo(201, "POST", "/api/v1/compliance/policies", env.Token, map[string]any{"name": "zero trust", "is_default": true,
		"rules": map[string]any{"min_os_version": "18", "require_passcode": true, "block_compromised": true,
			"max_threat_level": "medium", "check_in_validity_days": 7}})

	// A webhook receiver.
	hook := &hookReceiver{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	var created struct{ Secret string }
	env.mustDo(201, "POST", "/api/v1/webhooks", env.Token, map[string]any{"name": "idp", "url": hookSrv.URL + "/hook",
		"event_types": []string{mdmd.EventComplianceChanged}}).json(t, &created)
	hook.secret = created.Secret

	// An SSF receiver by push, subscribed to the owner's devices by email,
	// and one by poll, subscribed to the device (added once it exists).
	push := ssfrx.New(env.URL, fx.tokenFor(t, mdmd.RoleSSFReceiver), http.DefaultClient)
	if _, err := push.Discover(ctx, ssfrx.DeliveryPush, ssfrx.DeliveryPoll); err != nil {
		t.Fatal(err)
	}
	pushSrv := httptest.NewServer(push.PushHandler())
	defer pushSrv.Close()
	events := []string{ssfrx.EventDeviceComplianceChange, ssfrx.EventRiskLevelChange}
	pushStream, err := push.CreateStream(ctx, ssfrx.StreamConfig{EventsRequested: events, Delivery: &ssfrx.Delivery{
		Method: ssfrx.DeliveryPush, EndpointURL: pushSrv.URL + "/events", AuthorizationHeader: "Bearer rx-push-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	push.SetAudience(pushStream.Aud...)
	if err := push.AddSubject(ctx, pushStream.StreamID, map[string]any{"format": "email", "email": owner}, nil); err != nil {
		t.Fatal(err)
	}
	pollTok := f2token(t, fx)
	poll := ssfrx.New(env.URL, pollTok, http.DefaultClient)
	if _, err := poll.Discover(ctx, ssfrx.DeliveryPoll); err != nil {
		t.Fatal(err)
	}
	pollStream, err := poll.CreateStream(ctx, ssfrx.StreamConfig{EventsRequested: events, Delivery: &ssfrx.Delivery{Method: ssfrx.DeliveryPoll}})
	if err != nil {
		t.Fatal(err)
	}
	poll.SetAudience(pollStream.Aud...)
	// Bad stream configurations and subjects are refused.
	// (Sent raw: the receiver library itself refuses to send them.)
	for _, bad := range []map[string]any{
		{"delivery": map[string]any{"method": "urn:example:carrier-pigeon"}},
		{"delivery": map[string]any{"method": ssfrx.DeliveryPush, "endpoint_url": "ftp://idp.example.com/events"}},
		{"delivery": map[string]any{"method": ssfrx.DeliveryPush}},
		{"delivery": map[string]any{"method": ssfrx.DeliveryPoll}, "events_requested": "all"},
	} {
		if r := env.do("POST", "/api/v1/ssf/streams", pollTok, bad); r.Status != 400 {
			t.Errorf("stream %v: %d %s", bad, r.Status, r.Body)
		}
	}
	if streams, err := poll.ListStreams(ctx); err != nil || len(streams) != 1 {
		t.Errorf("after refused configurations: %d streams, %v", len(streams), err)
	}
	var he *ssfrx.HTTPError
	if err := poll.AddSubject(ctx, pollStream.StreamID, map[string]any{"format": "carrier-pigeon", "id": "x"}, nil); !asHTTP(err, &he) || he.Status != 400 {
		t.Errorf("unknown subject format: %v", err)
	}
	if _, err := push.GetStream(ctx, pollStream.StreamID); !asHTTP(err, &he) || he.Status != 404 {
		t.Errorf("another receiver's stream: %v", err)
	}
	// Verification: the receiver asks for an event with its own state and
	// gets it by push, verified against the JWKS.
	if err := push.RequestVerification(ctx, pushStream.StreamID, "check-42"); err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithTimeout(ctx, 20*time.Second)
	if _, err := push.WaitFor(vctx, func(s ssfrx.SET) bool { st, ok := s.Verification(); return ok && st == "check-42" }); err != nil {
		t.Fatalf("no verification event: %v", err)
	}
	vcancel()

	// A relying party, approved by an admin through its token.
	var rp struct{ Secret string }
	env.mustDo(201, "POST", "/api/v1/tokens", env.Token, map[string]any{"name": "idp", "role": "relying_party", "audience": rpAudience}).json(t, &rp)
	if r := env.do("POST", "/api/v1/tokens", env.Token, map[string]any{"name": "idp2", "role": "relying_party"}); r.Status != 400 {
		t.Fatalf("relying party without an audience: %d", r.Status)
	}
	jwks := func() jose.JSONWebKeySet {
		t.Helper()
		resp, err := http.Get(env.URL + "/compliance/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				t.Fatal("the JWKS publishes a private key")
			}
		}
		return set
	}

	// Enroll a healthy iPhone.
	url, _ := env.link(t, map[string]any{"owner_user": owner})
	healthy := applesim.DefaultPosture
	sim, dev := env.enroll(t, url, "00008110-00CA0001", healthy)
	if err := poll.AddSubject(ctx, pollStream.StreamID, map[string]any{"format": "complex",
		"device": map[string]any{"format": "opaque", "id": dev.ID}}, nil); err != nil {
		t.Fatal(err)
	}
	var polled []ssfrx.SET
	var seenJTI []string
	// expect waits for the device's state, a webhook for the change, and
	// the matching CAEP status by push and by poll.
	expect := func(what, from, to string) {
		t.Helper()
		eventually(t, 20*time.Second, what+": state "+to, func() bool {
			c, err := st.GetCompliance(ctx, dev.ID)
			return err == nil && c.State == to
		})
		eventually(t, 20*time.Second, what+": webhook", func() bool { return hook.has(dev.ID, from, to) })
		caep := map[string]string{"compliant": "compliant", "noncompliant": "not-compliant"}[to]
		match := func(s ssfrx.SET) bool {
			ch, ok := s.DeviceComplianceChange()
			return ok && ch.CurrentStatus == caep && s.Subject != nil && s.Subject.Device != nil && s.Subject.Device.ID == dev.ID
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		set, err := push.WaitFor(wctx, func(s ssfrx.SET) bool { return match(s) && !slices.Contains(seenJTI, s.JTI) })
		if err != nil {
			t.Fatalf("%s: no pushed SET with current_status %s: %v", what, caep, err)
		}
		seenJTI = append(seenJTI, set.JTI)
		ch, _ := set.DeviceComplianceChange()
		if ch.PreviousStatus == ch.CurrentStatus || ch.EventTimestamp == nil || ch.ReasonAdmin["en"] == "" {
			t.Errorf("%s: SET %+v", what, ch)
		}
		if set.Subject.User == nil || set.Subject.User.Email != owner {
			t.Errorf("%s: subject %s", what, set.SubID)
		}
		eventually(t, 20*time.Second, what+": polled SET", func() bool {
			sets, _, err := poll.Poll(ctx, pollStream.StreamID, acks(polled), 10, true)
			if err != nil {
				t.Fatal(err)
			}
			polled = sets
			return slices.ContainsFunc(sets, match)
		})
	}
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	expect("enrolled healthy", "*", "compliant")

	// A token for the relying party, and one the device asks for itself
	// with its identity: both verify offline, and only where they should.
	var issued struct {
		Token string `json:"token"`
	}
	env.mustDo(200, "POST", "/api/v1/compliance/token", rp.Secret, map[string]any{"device_id": dev.ID}).json(t, &issued)
	keys := jwks()
	claims, err := verifyToken(issued.Token, keys, rpAudience, sim.Cert(), time.Now())
	if err != nil {
		t.Fatalf("relying party's token: %v", err)
	}
	if c, _ := claims["compliance"].(map[string]any); c["state"] != "compliant" || claims["sub"] != dev.ID || claims["iss"] != env.URL {
		t.Errorf("claims = %v", claims)
	}
	other := applesim.New("00008110-00CA0099", "SNOTHER", healthy)
	url2, _ := env.link(t, map[string]any{})
	if err := other.Enroll(ctx, url2, env.trust); err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func() error{
		"expired": func() error {
			_, err := verifyToken(issued.Token, keys, rpAudience, sim.Cert(), time.Now().Add(61*time.Minute))
			return err
		},
		"another audience": func() error {
			_, err := verifyToken(issued.Token, keys, "https://vpn.example.com", sim.Cert(), time.Now())
			return err
		},
		"wrong cnf": func() error {
			_, err := verifyToken(issued.Token, keys, rpAudience, other.Cert(), time.Now())
			return err
		},
		"tampered": func() error {
			parts := strings.Split(issued.Token, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(must64(t, parts[1])), `"compliant"`, `"noncompliant"`, 1)))
			_, err := verifyToken(strings.Join(parts, "."), keys, rpAudience, sim.Cert(), time.Now())
			return err
		},
	} {
		if check() == nil {
			t.Errorf("a token verified %s", name)
		}
	}
	deviceToken := func(aud string) (int, string) {
		body, _ := json.Marshal(map[string]string{"audience": aud})
		status, raw, err := sim.Do(ctx, env.URL+"/mdm/compliance-token", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Token string }
		_ = json.Unmarshal(raw, &out)
		return status, out.Token
	}
	if status, _ := deviceToken("https://unapproved.example.com"); status != 403 {
		t.Errorf("device token for an unapproved audience: %d", status)
	}
	status, devTok := deviceToken(rpAudience)
	if status != 200 {
		t.Fatalf("device token: %d", status)
	}
	if _, err := verifyToken(devTok, keys, rpAudience, sim.Cert(), time.Now()); err != nil {
		t.Errorf("device's own token: %v", err)
	}
	if r := env.do("POST", "/api/v1/compliance/token", env.Token, map[string]any{"device_id": dev.ID}); r.Status != 403 {
		t.Errorf("an admin token minting compliance tokens: %d", r.Status)
	}

	// Old OS, then back.
	old := healthy
	old.OSVersion = "17.6"
	sim.SetPosture(old)
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	expect("old OS", "compliant", "noncompliant")
	env.mustDo(200, "POST", "/api/v1/compliance/token", rp.Secret, map[string]any{"device_id": dev.ID}).json(t, &issued)
	claims, err = verifyToken(issued.Token, jwks(), rpAudience, sim.Cert(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := claims["compliance"].(map[string]any); c["state"] != "noncompliant" || !strings.Contains(fmt.Sprint(c["failed_rules"]), "os_version") {
		t.Errorf("token after the downgrade: %v", claims["compliance"])
	}
	sim.SetPosture(healthy)
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	expect("OS updated", "noncompliant", "compliant")

	// Passcode removed, while every receiver is down: nothing is lost.
	pushTries, hookTries := push.PushRequests(), hook.tries.Load()
	push.SetDown(true)
	hook.down.Store(true)
	noPass := healthy
	noPass.PasscodePresent, noPass.PasscodeCompliant = false, false
	sim.SetPosture(noPass)
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	eventually(t, 20*time.Second, "both receivers to be tried while down", func() bool {
		return push.PushRequests() > pushTries && hook.tries.Load() > hookTries
	})
	push.SetDown(false)
	hook.down.Store(false)
	expect("passcode removed", "compliant", "noncompliant")
	sim.SetPosture(healthy)
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	expect("passcode set", "noncompliant", "compliant")

	// The MTD partner: high threat, then a jailbreak verdict.
	partner := fx.tokenFor(t, mdmd.RoleMTDPartner)
	env.mustDo(200, "PUT", "/api/v1/mtd/devices/"+dev.ID+"/threat", partner, map[string]any{"level": "high", "source": "Acme MTD"})
	expect("MTD high", "compliant", "noncompliant")
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := push.WaitFor(wctx, func(s ssfrx.SET) bool {
		r, ok := s.RiskLevelChange()
		return ok && r.CurrentLevel == "HIGH" && r.Principal != ""
	}); err != nil {
		t.Fatalf("no risk-level-change: %v", err)
	}
	env.mustDo(200, "PUT", "/api/v1/mtd/devices/"+dev.ID+"/threat", partner, map[string]any{"level": "low", "source": "Acme MTD"})
	expect("MTD low", "noncompliant", "compliant")
	env.mustDo(200, "PUT", "/api/v1/mtd/devices/"+dev.ID+"/threat", partner, map[string]any{"level": "low", "source": "Acme MTD", "compromised": true})
	expect("jailbroken", "compliant", "noncompliant")
	env.mustDo(200, "PUT", "/api/v1/mtd/devices/"+dev.ID+"/threat", partner, map[string]any{"level": "low", "source": "Acme MTD", "compromised": false})
	expect("jailbreak gone", "noncompliant", "compliant")

	// Eight days of silence: the schedule alone makes it noncompliant,
	// and a token minted now is already expired (never past the window).
	past := time.Now().Add(-8 * 24 * time.Hour).UTC()
	if _, err := st.DB().ExecContext(ctx, "UPDATE devices SET last_seen_at = $1 WHERE id = $2", past, dev.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := env.srv.Compliance().Sweep(ctx); err != nil || n < 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	expect("silent for 8 days", "compliant", "noncompliant")
	env.mustDo(200, "POST", "/api/v1/compliance/token", rp.Secret, map[string]any{"device_id": dev.ID}).json(t, &issued)
	if _, err := verifyToken(issued.Token, jwks(), rpAudience, sim.Cert(), time.Now()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("token for a silent device: %v", err)
	}

	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.bad) > 0 {
		t.Errorf("webhooks with bad signatures: %v", hook.bad)
	}
	if rej := push.Rejected(); len(rej) > 0 {
		t.Errorf("the receiver refused SETs: %+v", rej)
	}
}

func acks(sets []ssfrx.SET) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s.JTI)
	}
	return out
}

func asHTTP(err error, target **ssfrx.HTTPError) bool {
	he, ok := err.(*ssfrx.HTTPError)
	if !ok {
		return false
	}
	*target = he
	return true
}

func must64(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// f2token mints a second SSF receiver token.
func f2token(t *testing.T, f *fixture) string {
	var out struct{ Secret string }
	f.mustDo(201, "POST", "/api/v1/tokens", f.Token, map[string]any{"name": "poller", "role": mdmd.RoleSSFReceiver}).json(t, &out)
	return out.Secret
}

// Android posture through AMAPI status reports: a security patch that
// grows too old, and a device AMAPI reports compromised, flip the state.
func TestAndroidCompliance(t *testing.T) { eachBackend(t, testAndroidCompliance) }

func testAndroidCompliance(t *testing.T, dbURL string) {
	env := newAndroidEnv(t, dbURL)
	st, ctx := env.srv.Store(), context.Background()
	env.mustDo(201, "POST", "/api/v1/compliance/policies", env.Token, map[string]any{"name": "android", "platform": "android",
		"is_default": true, "rules": map[string]any{"max_patch_age_days": 90, "block_compromised": true, "require_secure_posture": true,
			"require_encryption": true, "require_passcode": true}})
	tok := env.token(t, map[string]any{"kind": "fully_managed"})
	name, dev := env.enroll(t, tok.Value, fakeamapi.HealthyPosture)
	state := func(want string) {
		t.Helper()
		eventually(t, 20*time.Second, "state "+want, func() bool {
			c, err := st.GetCompliance(ctx, dev.ID)
			return err == nil && c.State == want
		})
	}
	state("compliant")
	oldPatch := fakeamapi.HealthyPosture
	oldPatch.SecurityPatchLevel = time.Now().AddDate(0, -5, 0).Format(time.DateOnly)
	if err := env.amapi.Report(name, oldPatch); err != nil {
		t.Fatal(err)
	}
	state("noncompliant")
	if err := env.amapi.Report(name, fakeamapi.HealthyPosture); err != nil {
		t.Fatal(err)
	}
	state("compliant")
	rooted := fakeamapi.HealthyPosture
	rooted.DevicePosture, rooted.PostureRisks = "POTENTIALLY_COMPROMISED", []string{"COMPROMISED_OS"}
	if err := env.amapi.Report(name, rooted); err != nil {
		t.Fatal(err)
	}
	state("noncompliant")
	c, err := st.GetCompliance(ctx, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(c.Rules), `"rule":"not_compromised","outcome":"failed"`) ||
		!strings.Contains(string(c.Rules), `"rule":"secure_posture","outcome":"failed"`) {
		t.Errorf("rules after rooting: %s", c.Rules)
	}
	var feed struct{ Items []mdmd.ComplianceChange }
	env.mustDo(200, "GET", "/api/v1/compliance/changes", env.Token, nil).json(t, &feed)
	var path []string
	for _, ch := range feed.Items {
		if ch.DeviceID == dev.ID {
			path = append(path, ch.ToState)
		}
	}
	if got := strings.Join(path, ","); !strings.HasSuffix(got, "compliant,noncompliant,compliant,noncompliant") {
		t.Errorf("feed for the device: %s", got)
	}
}
