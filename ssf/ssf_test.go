package ssf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-jose/go-jose/v4"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/jwtsign"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
	"github.com/mdmd/mdmd/web"
)

var ctx = context.Background()

const (
	caepCompliance = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
	caepRisk       = "https://schemas.openid.net/secevent/caep/event-type/risk-level-change"
	ssfVerify      = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	ssfUpdated     = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
	methodPush     = "urn:ietf:rfc:8935"
	methodPoll     = "urn:ietf:rfc:8936"
)

// env is an mdmd server with the SSF transmitter mounted as the app
// mounts it: the admin API under /api and the public routes at the root.
type env struct {
	t     testing.TB
	st    *storage.Store
	tr    *ssf.Transmitter
	keys  *jwtsign.Keyring
	srv   *httptest.Server
	admin string
	opt   ssf.Options
}

func newEnv(t testing.TB, dbURL string, tune func(*ssf.Options)) *env {
	t.Helper()
	st := storagetest.Open(t, dbURL, storage.Options{})
	bx, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A rotated-in key signs at once here (one replica), so that a test
	// sees the new kid without waiting out the pre-publication.
	keys := jwtsign.New(st, bx, jwtsign.Options{Ring: ssf.KeyRing, MaxTokenLifetime: ssf.KeyRetention, Logger: log, PrePublish: -1})
	// Receivers are httptest servers on 127.0.0.1.
	opt := ssf.Options{Issuer: srv.URL, Keys: keys, Box: bx, Logger: log, RetryBackoff: func(int) time.Duration { return 20 * time.Millisecond },
		PollMaxWait: 500 * time.Millisecond, AllowPrivateTargets: true}
	if tune != nil {
		tune(&opt)
	}
	tr, err := ssf.New(st, opt)
	if err != nil {
		t.Fatal(err)
	}
	api := web.NewAPI(web.APIDeps{Devices: st, Groups: st, Commands: st, Tokens: st, Audit: st, Logger: log, Modules: []web.Module{tr}})
	root := chi.NewRouter()
	root.Mount("/api", api)
	tr.RegisterPublic(root)
	handler = root
	e := &env{t: t, st: st, tr: tr, keys: keys, srv: srv, opt: opt}
	e.admin = e.token(mdmd.RoleAdmin)
	return e
}

func (e *env) token(role mdmd.Role) string {
	e.t.Helper()
	secretTok, _ := e.tokenID(role)
	return secretTok
}

// tokenID mints a token and returns its secret and its ID.
func (e *env) tokenID(role mdmd.Role) (string, string) {
	e.t.Helper()
	secretTok, hash := auth.NewToken()
	tok := &mdmd.APIToken{Name: string(role) + "-" + hash[:6], Role: role, Hash: hash,
		Prefix: auth.DisplayPrefix(secretTok), ExpiresAt: time.Now().Add(time.Hour)}
	if err := e.st.CreateAPIToken(ctx, tok); err != nil {
		e.t.Fatal(err)
	}
	return secretTok, tok.ID
}

// call makes a request with a bearer token and decodes a JSON answer.
func (e *env) call(token, method, url string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, ok := body.(string)
		if !ok {
			b, _ := json.Marshal(body)
			raw = string(b)
		}
		rd = strings.NewReader(raw)
	}
	if strings.HasPrefix(url, "/") {
		url = e.srv.URL + url
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

func (e *env) dispatch() {
	e.t.Helper()
	if err := e.tr.Dispatch(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) device(name, owner string) *mdmd.Device {
	e.t.Helper()
	d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: ptr("UDID-" + name), Name: name, OwnerUser: owner,
		Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
	if err := e.st.CreateDevice(ctx, d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) compliance(d *mdmd.Device, state, reason string) {
	e.t.Helper()
	rules := mdmd.RawJSON(`[]`)
	if state == "noncompliant" {
		rules = mdmd.RawJSON(`[{"rule":"os_version","outcome":"failed"}]`)
	}
	if _, _, err := e.st.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: state, Reason: reason, Rules: rules,
		EvaluatedAt: time.Now()}, "posture"); err != nil {
		e.t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// --- An SSF receiver written from RFC 8417, 8935, 8936 and SSF 1.0. It
// uses go-jose and the transmitter's published documents, nothing else.

type metadata struct {
	SpecVersion              string   `json:"spec_version"`
	Issuer                   string   `json:"issuer"`
	JWKSURI                  string   `json:"jwks_uri"`
	DeliveryMethodsSupported []string `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string   `json:"configuration_endpoint"`
	StatusEndpoint           string   `json:"status_endpoint"`
	AddSubjectEndpoint       string   `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string   `json:"remove_subject_endpoint"`
	VerificationEndpoint     string   `json:"verification_endpoint"`
	AuthorizationSchemes     []struct {
		SpecURN string `json:"spec_urn"`
	} `json:"authorization_schemes"`
	DefaultSubjects string `json:"default_subjects"`
}

type receivedSET struct {
	KID    string
	Claims map[string]any
}

func (s receivedSET) event(uri string) map[string]any {
	ev, _ := s.Claims["events"].(map[string]any)
	m, _ := ev[uri].(map[string]any)
	return m
}

type receiver struct {
	t      *testing.T
	issuer string
	meta   metadata
	token  string
	aud    any

	mu       sync.Mutex
	jwks     jose.JSONWebKeySet
	down     bool
	reject   map[string]bool // jti → answer 400
	got      []receivedSET
	attempts int
	srv      *httptest.Server
}

func newReceiver(t *testing.T, issuer, token string) *receiver {
	t.Helper()
	rx := &receiver{t: t, issuer: issuer, token: token, reject: map[string]bool{}}
	resp, err := http.Get(issuer + "/.well-known/ssf-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("configuration: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&rx.meta); err != nil {
		t.Fatal(err)
	}
	if rx.meta.Issuer != issuer {
		t.Fatalf("issuer %q, want %q (SSF §7.2.1: identical to the URL used)", rx.meta.Issuer, issuer)
	}
	rx.refreshKeys()
	rx.srv = httptest.NewServer(http.HandlerFunc(rx.push))
	t.Cleanup(rx.srv.Close)
	return rx
}

func (rx *receiver) refreshKeys() {
	resp, err := http.Get(rx.meta.JWKSURI)
	if err != nil {
		rx.t.Error(err)
		return
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		rx.t.Error(err)
		return
	}
	rx.mu.Lock()
	rx.jwks = set
	rx.mu.Unlock()
}

// validate checks a SET per RFC 8417 and SSF §4: RS256 over a published
// key, typ secevent+jwt, iss, aud, iat, jti, events and sub_id present,
// no sub and no exp.
func (rx *receiver) validate(token string) (receivedSET, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return receivedSET{}, err
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "secevent+jwt" {
		return receivedSET{}, fmt.Errorf("typ %q", typ)
	}
	rx.mu.Lock()
	keys := rx.jwks.Key(h.KeyID)
	rx.mu.Unlock()
	if len(keys) == 0 { // an unknown kid: the transmitter rotated
		rx.refreshKeys()
		rx.mu.Lock()
		keys = rx.jwks.Key(h.KeyID)
		rx.mu.Unlock()
	}
	if len(keys) != 1 {
		return receivedSET{}, fmt.Errorf("unknown kid %q", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return receivedSET{}, err
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return receivedSET{}, err
	}
	if c["iss"] != rx.issuer {
		return receivedSET{}, fmt.Errorf("iss %v", c["iss"])
	}
	if fmt.Sprint(c["aud"]) != fmt.Sprint(rx.aud) {
		return receivedSET{}, fmt.Errorf("aud %v, want %v", c["aud"], rx.aud)
	}
	if _, ok := c["iat"].(float64); !ok {
		return receivedSET{}, fmt.Errorf("iat %v", c["iat"])
	}
	if jti, _ := c["jti"].(string); jti == "" {
		return receivedSET{}, fmt.Errorf("no jti")
	}
	if _, ok := c["sub"]; ok {
		return receivedSET{}, fmt.Errorf("a SET with sub")
	}
	if _, ok := c["exp"]; ok {
		return receivedSET{}, fmt.Errorf("a SET with exp")
	}
	if ev, ok := c["events"].(map[string]any); !ok || len(ev) != 1 {
		return receivedSET{}, fmt.Errorf("events %v", c["events"])
	}
	if _, ok := c["sub_id"].(map[string]any); !ok {
		return receivedSET{}, fmt.Errorf("sub_id %v", c["sub_id"])
	}
	return receivedSET{KID: h.KeyID, Claims: c}, nil
}

// push is the RFC 8935 endpoint.
func (rx *receiver) push(w http.ResponseWriter, r *http.Request) {
	rx.mu.Lock()
	rx.attempts++
	down := rx.down
	rx.mu.Unlock()
	if down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	fail := func(code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
	}
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/secevent+jwt" || r.Header.Get("Accept") != "application/json" {
		fail("invalid_request", "want POST application/secevent+jwt accepting application/json")
		return
	}
	if r.Header.Get("Authorization") != "Bearer rx-secret" {
		fail("authentication_failed", "bad authorization header")
		return
	}
	body, _ := io.ReadAll(r.Body)
	set, err := rx.validate(string(body))
	if err != nil {
		rx.t.Errorf("push: invalid SET: %v", err)
		fail("invalid_request", err.Error())
		return
	}
	rx.mu.Lock()
	reject := rx.reject[set.Claims["jti"].(string)]
	if !reject {
		rx.got = append(rx.got, set)
	}
	rx.mu.Unlock()
	if reject {
		fail("invalid_key", "rejected by the test")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (rx *receiver) received() []receivedSET {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return append([]receivedSET(nil), rx.got...)
}

func (rx *receiver) setDown(down bool) {
	rx.mu.Lock()
	rx.down = down
	rx.mu.Unlock()
}

// poll is an RFC 8936 poll.
func (rx *receiver) poll(endpoint string, req map[string]any) (sets map[string]receivedSET, more bool) {
	rx.t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest("POST", endpoint, bytes.NewReader(body))
	hr.Header.Set("Authorization", "Bearer "+rx.token)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		rx.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Sets          map[string]string `json:"sets"`
		MoreAvailable bool              `json:"moreAvailable"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(raw, &out) != nil || out.Sets == nil {
		rx.t.Fatalf("poll: %d %s", resp.StatusCode, raw)
	}
	sets = map[string]receivedSET{}
	for jti, tok := range out.Sets {
		s, err := rx.validate(tok)
		if err != nil {
			rx.t.Fatalf("poll: invalid SET: %v", err)
		}
		if s.Claims["jti"] != jti {
			rx.t.Fatalf("poll: SET under jti %s has jti %v", jti, s.Claims["jti"])
		}
		sets[jti] = s
	}
	return sets, out.MoreAvailable
}

// --- Tests.

func TestMetadataAndJWKS(t *testing.T) {
	e := newEnv(t, storagetest.SQLiteURL(t), nil)
	rx := newReceiver(t, e.srv.URL, "")
	m := rx.meta
	if m.SpecVersion != "1_0" || m.JWKSURI != e.srv.URL+"/ssf/jwks.json" || m.ConfigurationEndpoint != e.srv.URL+"/api/v1/ssf/streams" ||
		m.StatusEndpoint == "" || m.AddSubjectEndpoint == "" || m.RemoveSubjectEndpoint == "" || m.VerificationEndpoint == "" ||
		len(m.DeliveryMethodsSupported) != 2 || len(m.AuthorizationSchemes) != 1 || m.AuthorizationSchemes[0].SpecURN != "urn:ietf:rfc:6750" ||
		m.DefaultSubjects != "NONE" {
		t.Fatalf("metadata = %+v", m)
	}
	if len(rx.jwks.Keys) != 1 || !rx.jwks.Keys[0].IsPublic() || rx.jwks.Keys[0].Algorithm != "RS256" {
		t.Fatalf("jwks = %+v", rx.jwks)
	}
}

func TestPushEndToEnd(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, nil)
			tok, tokID := e.tokenID(mdmd.RoleSSFReceiver)
			rx := newReceiver(t, e.srv.URL, tok)

			var cfg map[string]any
			code := e.call(tok, "POST", rx.meta.ConfigurationEndpoint, map[string]any{
				"delivery":         map[string]any{"method": methodPush, "endpoint_url": rx.srv.URL + "/events", "authorization_header": "Bearer rx-secret"},
				"events_requested": []string{caepCompliance, caepRisk, "urn:example:unknown"},
				"description":      "IdP",
			}, &cfg)
			if code != 201 || cfg["iss"] != e.srv.URL || cfg["aud"] != "urn:mdmd:ssf:receiver:"+tokID || cfg["stream_id"] == "" ||
				fmt.Sprint(cfg["events_delivered"]) != fmt.Sprint([]string{caepCompliance, caepRisk}) {
				t.Fatalf("create: %d %v", code, cfg)
			}
			rx.aud = cfg["aud"]
			id := cfg["stream_id"].(string)
			if code := e.call(tok, "POST", rx.meta.AddSubjectEndpoint, map[string]any{"stream_id": id,
				"subject": map[string]string{"format": "email", "email": "Ada@Example.com"}, "verified": true}, nil); code != 200 {
				t.Fatalf("add subject: %d", code)
			}

			ada, bob := e.device("ada-phone", "ada@example.com"), e.device("bob-phone", "bob@example.com")
			e.compliance(ada, "compliant", "")
			e.compliance(bob, "noncompliant", "old OS") // bob is not a subject
			e.compliance(ada, "in_grace", "old OS")     // still compliant for CAEP: no event
			e.compliance(ada, "noncompliant", "old OS")
			if err := e.st.AppendEvent(ctx, mdmd.EventThreatChanged, ada.ID, mdmd.ThreatChangedData{EventDevice: mdmd.NewEventDevice(ada),
				PreviousLevel: "secured", CurrentLevel: "high", Source: "acme-mtd", ReportedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			e.dispatch()

			got := rx.received()
			if len(got) != 3 {
				t.Fatalf("received %d SETs, want 3", len(got))
			}
			want := [][2]string{{"not-compliant", "compliant"}, {"compliant", "not-compliant"}}
			jtis := map[string]bool{}
			for i, w := range want {
				ev := got[i].event(caepCompliance)
				if ev == nil || ev["previous_status"] != w[0] || ev["current_status"] != w[1] || ev["event_timestamp"] == nil ||
					ev["initiating_entity"] != "policy" {
					t.Fatalf("SET %d: %v, want %s → %s", i, got[i].Claims, w[0], w[1])
				}
				sub := got[i].Claims["sub_id"].(map[string]any)
				dev, _ := sub["device"].(map[string]any)
				user, _ := sub["user"].(map[string]any)
				if sub["format"] != "complex" || dev["format"] != "opaque" || dev["id"] != ada.ID || user["format"] != "email" || user["email"] != "ada@example.com" {
					t.Fatalf("sub_id = %v", sub)
				}
				if txn, _ := got[i].Claims["txn"].(string); txn == "" {
					t.Fatal("no txn")
				}
				jtis[got[i].Claims["jti"].(string)] = true
			}
			if reason := got[1].event(caepCompliance)["reason_admin"].(map[string]any)["en"]; !strings.Contains(fmt.Sprint(reason), "os_version") {
				t.Fatalf("reason_admin = %v", reason)
			}
			risk := got[2].event(caepRisk)
			if risk["previous_level"] != "LOW" || risk["current_level"] != "HIGH" || risk["principal"] != "DEVICE" || risk["risk_reason"] == nil {
				t.Fatalf("risk-level-change = %v", risk)
			}
			jtis[got[2].Claims["jti"].(string)] = true
			if len(jtis) != 3 {
				t.Fatal("jti reused")
			}

			// Verification, and its minimum interval.
			if code := e.call(tok, "POST", rx.meta.VerificationEndpoint, map[string]string{"stream_id": id, "state": "c3RhdGU"}, nil); code != 204 {
				t.Fatalf("verify: %d", code)
			}
			if code := e.call(tok, "POST", rx.meta.VerificationEndpoint, map[string]string{"stream_id": id}, nil); code != 429 {
				t.Fatalf("verify again at once: %d, want 429", code)
			}
			e.dispatch()
			got = rx.received()
			v := got[len(got)-1]
			if v.event(ssfVerify)["state"] != "c3RhdGU" || fmt.Sprint(v.Claims["sub_id"]) != fmt.Sprint(map[string]any{"format": "opaque", "id": id}) {
				t.Fatalf("verification SET = %v", v.Claims)
			}

			// Another receiver cannot see or touch the stream.
			other := e.token(mdmd.RoleSSFReceiver)
			for _, c := range []struct {
				method, url string
				body        any
			}{
				{"GET", rx.meta.ConfigurationEndpoint + "?stream_id=" + id, nil},
				{"PATCH", rx.meta.ConfigurationEndpoint, map[string]any{"stream_id": id, "description": "mine"}},
				{"DELETE", rx.meta.ConfigurationEndpoint + "?stream_id=" + id, nil},
				{"GET", rx.meta.StatusEndpoint + "?stream_id=" + id, nil},
				{"POST", rx.meta.StatusEndpoint, map[string]any{"stream_id": id, "status": "disabled"}},
				{"POST", rx.meta.AddSubjectEndpoint, map[string]any{"stream_id": id, "subject": map[string]string{"format": "opaque", "id": "x"}}},
				{"POST", rx.meta.VerificationEndpoint, map[string]any{"stream_id": id}},
			} {
				if code := e.call(other, c.method, c.url, c.body, nil); code != 404 {
					t.Errorf("another receiver: %s %s = %d, want 404", c.method, c.url, code)
				}
			}
			var list []map[string]any
			if code := e.call(other, "GET", rx.meta.ConfigurationEndpoint, nil, &list); code != 200 || len(list) != 0 {
				t.Fatalf("another receiver's list: %d %v", code, list)
			}
			if code := e.call(tok, "GET", rx.meta.ConfigurationEndpoint, nil, &list); code != 200 || len(list) != 1 {
				t.Fatalf("own list: %d %v", code, list)
			}

			// Key rotation: new SETs carry the new kid, and the JWKS keeps
			// the old key next to it.
			oldKID := got[0].KID
			if _, err := e.keys.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			rx.refreshKeys()
			if len(rx.jwks.Keys) != 2 || len(rx.jwks.Key(oldKID)) != 1 {
				t.Fatalf("JWKS after rotation has %d keys", len(rx.jwks.Keys))
			}
			e.compliance(ada, "compliant", "")
			e.dispatch()
			got = rx.received()
			last := got[len(got)-1]
			if last.KID == oldKID || last.event(caepCompliance)["current_status"] != "compliant" {
				t.Fatalf("after rotation: kid %s (old %s), %v", last.KID, oldKID, last.Claims)
			}

			// Status: paused holds, enabled delivers what was held.
			var status map[string]string
			if code := e.call(tok, "POST", rx.meta.StatusEndpoint, map[string]string{"stream_id": id, "status": "paused", "reason": "maintenance"}, &status); code != 200 ||
				status["status"] != "paused" {
				t.Fatalf("pause: %d %v", code, status)
			}
			n := len(rx.received())
			e.compliance(ada, "noncompliant", "old OS")
			e.dispatch()
			if len(rx.received()) != n {
				t.Fatal("a paused stream delivered")
			}
			if code := e.call(tok, "GET", rx.meta.StatusEndpoint+"?stream_id="+id, nil, &status); code != 200 || status["reason"] != "maintenance" {
				t.Fatalf("read status: %d %v", code, status)
			}
			e.call(tok, "POST", rx.meta.StatusEndpoint, map[string]string{"stream_id": id, "status": "enabled"}, nil)
			e.dispatch()
			if got := rx.received(); len(got) != n+1 || got[n].event(caepCompliance)["current_status"] != "not-compliant" {
				t.Fatalf("held event not delivered on enable: %d", len(got))
			}

			// An administrator pauses the stream: the receiver is told first.
			var adm map[string]any
			if code := e.call(e.admin, "POST", "/api/v1/ssf/admin/streams/"+id+"/status", map[string]string{"status": "paused", "reason": "audit"}, &adm); code != 200 {
				t.Fatalf("admin pause: %d", code)
			}
			e.dispatch()
			got = rx.received()
			if up := got[len(got)-1].event(ssfUpdated); up["status"] != "paused" || up["reason"] != "audit" {
				t.Fatalf("stream-updated = %v", got[len(got)-1].Claims)
			}

			if code := e.call(tok, "DELETE", rx.meta.ConfigurationEndpoint+"?stream_id="+id, nil, nil); code != 204 {
				t.Fatalf("delete: %d", code)
			}
			if code := e.call(tok, "GET", rx.meta.ConfigurationEndpoint+"?stream_id="+id, nil, nil); code != 404 {
				t.Fatalf("deleted stream: %d", code)
			}
		})
	}
}

// A receiver that is down gets everything, in order, once it is back; a
// SET it rejects with 400 is not sent again.
func TestPushReceiverDown(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, nil)
			tok := e.token(mdmd.RoleSSFReceiver)
			rx := newReceiver(t, e.srv.URL, tok)
			var cfg map[string]any
			if code := e.call(tok, "POST", rx.meta.ConfigurationEndpoint, map[string]any{
				"delivery":              map[string]any{"method": methodPush, "endpoint_url": rx.srv.URL, "authorization_header": "Bearer rx-secret"},
				"mdmd_default_subjects": "ALL", "mdmd_subject_format": "iss_sub",
			}, &cfg); code != 201 {
				t.Fatalf("create: %d", code)
			}
			rx.aud = cfg["aud"]
			rx.setDown(true)
			d := e.device("d", "")
			states := []string{"compliant", "noncompliant", "compliant", "noncompliant", "compliant"}
			for _, s := range states {
				e.compliance(d, s, "")
			}
			e.dispatch()
			if len(rx.received()) != 0 || rx.attempts == 0 {
				t.Fatalf("down receiver: %d received, %d attempts", len(rx.received()), rx.attempts)
			}
			time.Sleep(30 * time.Millisecond)
			e.dispatch() // still down: retried, still nothing lost
			rx.setDown(false)
			time.Sleep(30 * time.Millisecond)
			e.dispatch()
			got := rx.received()
			if len(got) != len(states) {
				t.Fatalf("after recovery: %d SETs, want %d", len(got), len(states))
			}
			prev := "not-compliant"
			for i, s := range got {
				ev := s.event(caepCompliance)
				if ev["previous_status"] != prev {
					t.Fatalf("SET %d out of order: %v", i, ev)
				}
				prev = ev["current_status"].(string)
				sub := s.Claims["sub_id"].(map[string]any)
				if sub["format"] != "iss_sub" || sub["iss"] != e.srv.URL || sub["sub"] != d.ID {
					t.Fatalf("iss_sub subject = %v", sub)
				}
			}

			// A 400 is final.
			e.compliance(d, "noncompliant", "")
			if _, err := e.tr.Fanout(ctx); err != nil {
				t.Fatal(err)
			}
			sets, _ := e.st.ListSSFSets(ctx, cfg["stream_id"].(string), 100)
			last := sets[len(sets)-1]
			rx.mu.Lock()
			rx.reject[last.JTI] = true
			rx.mu.Unlock()
			e.dispatch()
			time.Sleep(30 * time.Millisecond)
			e.dispatch()
			counts, _ := e.st.CountSSFSets(ctx, cfg["stream_id"].(string))
			if counts[mdmd.SETFailed] != 1 || counts[mdmd.SETPending] != 0 || counts[mdmd.SETDelivered] != int64(len(states)) {
				t.Fatalf("counts = %v", counts)
			}
		})
	}
}

func TestPollEndToEnd(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, func(o *ssf.Options) { o.PollAckTimeout = 300 * time.Millisecond })
			tok := e.token(mdmd.RoleSSFReceiver)
			rx := newReceiver(t, e.srv.URL, tok)
			// No delivery member: poll, with the transmitter's endpoint.
			var cfg map[string]any
			if code := e.call(tok, "POST", rx.meta.ConfigurationEndpoint, map[string]any{
				"events_requested": []string{caepCompliance}, "mdmd_default_subjects": "ALL"}, &cfg); code != 201 {
				t.Fatalf("create: %d", code)
			}
			delivery := cfg["delivery"].(map[string]any)
			endpoint, _ := delivery["endpoint_url"].(string)
			if delivery["method"] != methodPoll || !strings.HasPrefix(endpoint, e.srv.URL+"/") {
				t.Fatalf("delivery = %v", delivery)
			}
			rx.aud = cfg["aud"]
			id := cfg["stream_id"].(string)

			devs := []*mdmd.Device{e.device("p1", "ada@example.com"), e.device("p2", "ada@example.com"), e.device("p3", "")}
			// Removing a subject from an all-subjects stream excludes it.
			if code := e.call(tok, "POST", rx.meta.RemoveSubjectEndpoint, map[string]any{"stream_id": id,
				"subject": map[string]any{"format": "complex", "device": map[string]string{"format": "opaque", "id": devs[1].ID}}}, nil); code != 204 {
				t.Fatalf("remove subject: %d", code)
			}
			for _, d := range devs {
				e.compliance(d, "compliant", "")
			}
			if err := e.st.AppendEvent(ctx, mdmd.EventThreatChanged, devs[0].ID, mdmd.ThreatChangedData{EventDevice: mdmd.NewEventDevice(devs[0]),
				CurrentLevel: "high"}); err != nil { // not requested
				t.Fatal(err)
			}
			e.dispatch()

			first, more := rx.poll(endpoint, map[string]any{"maxEvents": 1, "returnImmediately": true})
			if len(first) != 1 || !more {
				t.Fatalf("first poll: %d SETs, more=%v", len(first), more)
			}
			var firstJTI string
			for jti, s := range first {
				firstJTI = jti
				ev := s.event(caepCompliance)
				sub := s.Claims["sub_id"].(map[string]any)
				if ev["previous_status"] != "not-compliant" || ev["current_status"] != "compliant" || sub["device"].(map[string]any)["id"] != devs[0].ID {
					t.Fatalf("first SET = %v", s.Claims)
				}
			}
			second, more := rx.poll(endpoint, map[string]any{"ack": []string{firstJTI}, "maxEvents": 10, "returnImmediately": true})
			if len(second) != 1 || more {
				t.Fatalf("second poll: %d SETs, more=%v", len(second), more)
			}
			var secondJTI string
			for jti, s := range second {
				secondJTI = jti
				if s.Claims["sub_id"].(map[string]any)["device"].(map[string]any)["id"] != devs[2].ID {
					t.Fatalf("second SET = %v, want p3 (p2 is excluded)", s.Claims)
				}
				if _, hasUser := s.Claims["sub_id"].(map[string]any)["user"]; hasUser {
					t.Fatal("a device without owner got a user subject")
				}
			}
			// Not acknowledged: returned again after the ack timeout, same jti.
			if again, _ := rx.poll(endpoint, map[string]any{"returnImmediately": true}); len(again) != 0 {
				t.Fatalf("an outstanding SET came back early: %v", again)
			}
			time.Sleep(350 * time.Millisecond)
			again, _ := rx.poll(endpoint, map[string]any{"returnImmediately": true})
			if _, ok := again[secondJTI]; !ok || len(again) != 1 {
				t.Fatalf("redelivery = %v, want %s", again, secondJTI)
			}
			if empty, more := rx.poll(endpoint, map[string]any{"ack": []string{secondJTI}, "maxEvents": 0}); len(empty) != 0 || more {
				t.Fatalf("ack-only poll = %v", empty)
			}
			// Long poll: waits for the next event.
			done := make(chan map[string]receivedSET)
			go func() {
				sets, _ := rx.poll(endpoint, map[string]any{"returnImmediately": false})
				done <- sets
			}()
			time.Sleep(100 * time.Millisecond)
			e.compliance(devs[0], "error", "evaluation failed")
			e.dispatch()
			select {
			case sets := <-done:
				if len(sets) != 1 {
					t.Fatalf("long poll = %v", sets)
				}
				for _, s := range sets {
					if ev := s.event(caepCompliance); ev["current_status"] != "not-compliant" {
						t.Fatalf("long poll SET = %v", ev)
					}
				}
			case <-time.After(5 * time.Second):
				t.Fatal("long poll did not return")
			}
			// Long poll with nothing to return ends after the bounded wait.
			start := time.Now()
			rx.poll(endpoint, map[string]any{"maxEvents": 5})
			if took := time.Since(start); took < 400*time.Millisecond || took > 3*time.Second {
				t.Fatalf("an empty long poll took %v", took)
			}
			// setErrs mark a SET failed.
			e.compliance(devs[2], "noncompliant", "")
			e.dispatch()
			bad, _ := rx.poll(endpoint, map[string]any{"returnImmediately": true})
			for jti := range bad {
				rx.poll(endpoint, map[string]any{"setErrs": map[string]any{jti: map[string]string{"err": "invalid_key", "description": "x"}}, "maxEvents": 0})
			}
			counts, _ := e.st.CountSSFSets(ctx, id)
			if counts[mdmd.SETFailed] != 1 {
				t.Fatalf("counts = %v", counts)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, storagetest.SQLiteURL(t), func(o *ssf.Options) { o.MaxStreamsPerReceiver = 2 })
	tok := e.token(mdmd.RoleSSFReceiver)
	rx := newReceiver(t, e.srv.URL, tok)
	cfgURL := rx.meta.ConfigurationEndpoint
	for _, c := range []struct {
		name string
		body any
		want int
	}{
		{"unsupported delivery method", map[string]any{"delivery": map[string]any{"method": "urn:example:carrier-pigeon"}}, 400},
		{"delivery without method", map[string]any{"delivery": map[string]any{"endpoint_url": rx.srv.URL}}, 400},
		{"push without endpoint", map[string]any{"delivery": map[string]any{"method": methodPush}}, 400},
		{"push over plain http", map[string]any{"delivery": map[string]any{"method": methodPush, "endpoint_url": "http://receiver.example.com/events"}}, 400},
		{"push with credentials in the URL", map[string]any{"delivery": map[string]any{"method": methodPush, "endpoint_url": "https://u:p@receiver.example.com/"}}, 400},
		{"header injection", map[string]any{"delivery": map[string]any{"method": methodPush, "endpoint_url": "https://r.example.com/", "authorization_header": "a\r\nX: y"}}, 400},
		{"poll endpoint from the receiver", map[string]any{"delivery": map[string]any{"method": methodPoll, "endpoint_url": "https://r.example.com/"}}, 400},
		{"events_requested not an array", map[string]any{"events_requested": caepCompliance}, 400},
		{"wrong iss", map[string]any{"iss": "https://evil.example.com"}, 400},
		{"stream_id on create", map[string]any{"stream_id": "mine"}, 400},
		{"inactivity_timeout", map[string]any{"inactivity_timeout": 60}, 400},
		{"unknown subject format member", map[string]any{"mdmd_subject_format": "phone"}, 400},
		{"bad default subjects", map[string]any{"mdmd_default_subjects": "SOME"}, 400},
		{"not JSON", "{", 400},
		{"not an object", "[]", 400},
	} {
		if code := e.call(tok, "POST", cfgURL, c.body, nil); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	// Unknown members are ignored.
	var cfg map[string]any
	if code := e.call(tok, "POST", cfgURL, map[string]any{"x-vendor-extension": true, "delivery": map[string]any{"method": methodPoll, "x": 1}}, &cfg); code != 201 {
		t.Fatalf("unknown members: %d", code)
	}
	id := cfg["stream_id"].(string)
	for _, c := range []struct {
		name   string
		method string
		body   any
		want   int
	}{
		{"PATCH without stream_id", "PATCH", map[string]any{"description": "x"}, 400},
		{"PATCH changing aud", "PATCH", map[string]any{"stream_id": id, "aud": "someone-else"}, 400},
		{"PATCH with wrong events_delivered", "PATCH", map[string]any{"stream_id": id, "events_delivered": []string{caepRisk}}, 400},
		{"PATCH with wrong min_verification_interval", "PATCH", map[string]any{"stream_id": id, "min_verification_interval": 1}, 400},
		{"PATCH unknown stream", "PATCH", map[string]any{"stream_id": "nope", "description": "x"}, 404},
		{"PUT with unsupported method", "PUT", map[string]any{"stream_id": id, "delivery": map[string]any{"method": "smtp"}}, 400},
	} {
		if code := e.call(tok, c.method, cfgURL, c.body, nil); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	// A PATCH echoing the transmitter-supplied members is fine.
	cfg["description"] = "changed"
	if code := e.call(tok, "PATCH", cfgURL, cfg, &cfg); code != 200 || cfg["description"] != "changed" {
		t.Fatalf("PATCH echoing the config: %d %v", code, cfg)
	}
	// PUT deletes the receiver-supplied members it leaves out.
	cfg = nil
	if code := e.call(tok, "PUT", cfgURL, map[string]any{"stream_id": id, "events_requested": []string{caepRisk}}, &cfg); code != 200 ||
		cfg["description"] != nil || fmt.Sprint(cfg["events_delivered"]) != fmt.Sprint([]string{caepRisk}) {
		t.Fatalf("PUT: %d %v", code, cfg)
	}

	for _, c := range []struct {
		name    string
		subject any
		want    int
	}{
		{"unknown format", map[string]any{"format": "fingerprint", "value": "x"}, 400},
		{"unsupported format", map[string]any{"format": "phone_number", "phone_number": "+12065550100"}, 400},
		{"no format", map[string]any{"id": "x"}, 400},
		{"opaque without id", map[string]any{"format": "opaque"}, 400},
		{"complex without device or user", map[string]any{"format": "complex", "tenant": map[string]string{"format": "opaque", "id": "t"}}, 400},
		{"complex with a bad member", map[string]any{"format": "complex", "device": map[string]string{"format": "nope", "id": "t"}}, 400},
		{"complex user by device format", map[string]any{"format": "complex", "device": map[string]string{"format": "email", "email": "a@b"}}, 400},
		{"not an object", "x", 400},
		{"complex device and user", map[string]any{"format": "complex", "device": map[string]string{"format": "opaque", "id": "d"},
			"user": map[string]string{"format": "email", "email": "a@example.com"}, "tenant": map[string]string{"format": "opaque", "id": "t"}}, 200},
		{"foreign iss_sub", map[string]any{"format": "iss_sub", "iss": "https://other.example.com", "sub": "x"}, 200},
	} {
		if code := e.call(tok, "POST", rx.meta.AddSubjectEndpoint, map[string]any{"stream_id": id, "subject": c.subject}, nil); code != c.want {
			t.Errorf("subject %s: %d, want %d", c.name, code, c.want)
		}
	}
	if code := e.call(tok, "POST", rx.meta.StatusEndpoint, map[string]any{"stream_id": id, "status": "asleep"}, nil); code != 400 {
		t.Errorf("bad status: %d", code)
	}
	// The stream limit.
	if code := e.call(tok, "POST", cfgURL, map[string]any{}, nil); code != 201 {
		t.Fatalf("second stream: %d", code)
	}
	if code := e.call(tok, "POST", cfgURL, map[string]any{}, nil); code != 409 {
		t.Fatalf("third stream: %d, want 409", code)
	}
	// Poll on a push stream, and with a negative maxEvents.
	var push map[string]any
	other := e.token(mdmd.RoleSSFReceiver)
	e.call(other, "POST", cfgURL, map[string]any{"delivery": map[string]any{"method": methodPush, "endpoint_url": "https://127.0.0.1:1/x"}}, &push)
	if code := e.call(other, "POST", "/api/v1/ssf/poll/"+push["stream_id"].(string), map[string]any{}, nil); code != 400 {
		t.Errorf("poll on a push stream: %d", code)
	}
	if code := e.call(tok, "POST", "/api/v1/ssf/poll/"+id, map[string]any{"maxEvents": -1}, nil); code != 400 {
		t.Errorf("negative maxEvents: %d", code)
	}
	var polled map[string]any
	if code := e.call(tok, "POST", "/api/v1/ssf/poll/"+id, nil, &polled); code != 200 || polled["sets"] == nil {
		t.Errorf("poll without a body: %d %v", code, polled)
	}
	if code := e.call(e.admin, "DELETE", "/api/v1/ssf/admin/streams/"+push["stream_id"].(string), nil, nil); code != 204 {
		t.Errorf("admin delete: %d", code)
	}
	// Authentication and scope.
	if code := e.call("", "GET", cfgURL, nil, nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code := e.call(e.admin, "GET", cfgURL, nil, nil); code != 403 {
		t.Errorf("admin token on the receiver API: %d", code)
	}
	if code := e.call(tok, "GET", "/api/v1/ssf/admin/streams", nil, nil); code != 403 {
		t.Errorf("receiver token on the admin view: %d", code)
	}
	if code := e.call(tok, "GET", "/api/v1/devices", nil, nil); code != 403 {
		t.Errorf("receiver token on devices: %d", code)
	}
}

// Run delivers without being asked.
func TestRun(t *testing.T) {
	e := newEnv(t, storagetest.SQLiteURL(t), func(o *ssf.Options) { o.Interval = 20 * time.Millisecond })
	tok := e.token(mdmd.RoleSSFReceiver)
	rx := newReceiver(t, e.srv.URL, tok)
	var cfg map[string]any
	e.call(tok, "POST", rx.meta.ConfigurationEndpoint, map[string]any{"mdmd_default_subjects": "ALL",
		"delivery": map[string]any{"method": methodPush, "endpoint_url": rx.srv.URL, "authorization_header": "Bearer rx-secret"}}, &cfg)
	rx.aud = cfg["aud"]
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.tr.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	e.compliance(e.device("r", "r@example.com"), "compliant", "")
	deadline := time.Now().Add(5 * time.Second)
	for len(rx.received()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run delivered nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
