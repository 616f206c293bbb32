package ssfrx

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func newRx(t *testing.T, tx *testTx) *Receiver {
	t.Helper()
	rx := New(tx.issuer, testBearer, tx.srv.Client())
	rx.SetAudience(testAud)
	if _, err := rx.Discover(context.Background(), DeliveryPoll, DeliveryPush); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return rx
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// post sends body to the push endpoint like an RFC 8935 transmitter.
func post(t *testing.T, url, contentType, auth, body string) (int, SETErr, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e SETErr
	if resp.StatusCode == http.StatusBadRequest {
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("400 Content-Type = %q", resp.Header.Get("Content-Type"))
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Errorf("400 body is not JSON: %s", raw)
		}
	}
	return resp.StatusCode, e, string(raw)
}

func pushServer(t *testing.T, rx *Receiver) string {
	rx.SetPushAuthorization(testPushHdr)
	srv := httptest.NewServer(rx.PushHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPushAcceptsValidSET(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)

	c := tx.claims(EventDeviceComplianceChange, compliance())
	status, _, body := post(t, url, "application/secevent+jwt", testPushHdr, good(c))
	if status != http.StatusAccepted || body != "" {
		t.Fatalf("got %d %q, want 202 with empty body", status, body)
	}
	set, err := rx.WaitFor(ctxT(t), func(s SET) bool { return s.JTI == c["jti"] })
	if err != nil {
		t.Fatal(err)
	}
	if set.Issuer != tx.issuer || set.TxnID != "txn-"+set.JTI || len(set.Audience) != 1 || set.Audience[0] != testAud {
		t.Errorf("envelope not decoded: %+v", set)
	}
	if set.Subject.Format != "complex" || set.Subject.Device == nil || set.Subject.Device.ID != "device-42" ||
		set.Subject.Tenant.ID != "tenant-1" {
		t.Errorf("subject not decoded: %+v", set.Subject)
	}
	dc, ok := set.DeviceComplianceChange()
	if !ok || dc.PreviousStatus != "compliant" || dc.CurrentStatus != "not-compliant" ||
		dc.InitiatingEntity != "policy" || dc.ReasonAdmin["en"] != "Disk encryption disabled" ||
		dc.EventTimestamp == nil || dc.EventTimestamp.Time().Unix() != 1700000000 {
		t.Errorf("DeviceComplianceChange() = %+v, %v", dc, ok)
	}
	if _, ok := set.RiskLevelChange(); ok {
		t.Error("RiskLevelChange() reported ok on a compliance event")
	}
	if _, ok := set.Verification(); ok {
		t.Error("Verification() reported ok on a compliance event")
	}
	if n := len(rx.Received()); n != 1 {
		t.Errorf("Received() has %d SETs, want 1", n)
	}
}

func TestPushRejectsInvalidSETs(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)

	with := func(edit func(c map[string]any)) map[string]any {
		c := tx.claims(EventDeviceComplianceChange, compliance())
		edit(c)
		return c
	}
	valid := func() map[string]any { return with(func(map[string]any) {}) }
	cases := []struct {
		name  string
		token string
		code  string
	}{
		{"wrong signature", sign(jose.RS256, keyB(), "k1", "secevent+jwt", mustJSON(valid())), CodeInvalidKey},
		{"unknown kid", sign(jose.RS256, keyB(), "nope", "secevent+jwt", mustJSON(valid())), CodeInvalidKey},
		{"alg none", unsigned(valid()), CodeInvalidKey},
		{"HS256 with the public key as secret", sign(jose.HS256, publicKeyBytes(), "k1", "secevent+jwt", mustJSON(valid())), CodeInvalidKey},
		{"RSA 1024-bit key", sign(jose.RS256, keyWeak(), "weak", "secevent+jwt", mustJSON(valid())), CodeInvalidKey},
		{"RS384", sign(jose.RS384, keyA(), "k1", "secevent+jwt", mustJSON(valid())), CodeInvalidKey},
		{"typ JWT", sign(jose.RS256, keyA(), "k1", "JWT", mustJSON(valid())), CodeInvalidRequest},
		{"typ missing", sign(jose.RS256, keyA(), "k1", "", mustJSON(valid())), CodeInvalidRequest},
		{"wrong iss", good(with(func(c map[string]any) { c["iss"] = "https://evil.example" })), CodeInvalidIssuer},
		{"iss with trailing slash", good(with(func(c map[string]any) { c["iss"] = tx.issuer + "/" })), CodeInvalidIssuer},
		{"wrong aud", good(with(func(c map[string]any) { c["aud"] = []string{"https://other.example"} })), CodeInvalidAudience},
		{"missing aud", good(with(func(c map[string]any) { delete(c, "aud") })), CodeInvalidAudience},
		{"missing jti", good(with(func(c map[string]any) { delete(c, "jti") })), CodeInvalidRequest},
		{"missing iat", good(with(func(c map[string]any) { delete(c, "iat") })), CodeInvalidRequest},
		{"iat in the future", good(with(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })), CodeInvalidRequest},
		{"expired exp", good(with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), CodeInvalidRequest},
		{"future exp", good(with(func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour).Unix() })), CodeInvalidRequest},
		{"sub claim", good(with(func(c map[string]any) { c["sub"] = "device-42" })), CodeInvalidRequest},
		{"missing sub_id", good(with(func(c map[string]any) { delete(c, "sub_id") })), CodeInvalidRequest},
		{"unknown subject format", good(with(func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "serial_number", "serial": "C02XYZ"}
		})), CodeInvalidRequest},
		{"numeric txn", good(with(func(c map[string]any) { c["txn"] = 8675309 })), CodeInvalidRequest},
		{"two events", good(with(func(c map[string]any) {
			c["events"] = map[string]any{EventDeviceComplianceChange: compliance(), EventSessionRevoked: map[string]any{}}
		})), CodeInvalidRequest},
		{"events not an object", good(with(func(c map[string]any) { c["events"] = []string{EventSessionRevoked} })), CodeInvalidRequest},
		{"bad compliance status", good(with(func(c map[string]any) {
			c["events"] = map[string]any{EventDeviceComplianceChange: map[string]any{"previous_status": "compliant", "current_status": "noncompliant"}}
		})), CodeInvalidRequest},
		{"risk level lowercase", good(with(func(c map[string]any) {
			c["events"] = map[string]any{EventRiskLevelChange: map[string]any{"principal": "DEVICE", "current_level": "high"}}
		})), CodeInvalidRequest},
		{"duplicate claim", sign(jose.RS256, keyA(), "k1", "secevent+jwt",
			[]byte(strings.Replace(string(mustJSON(valid())), `{`, `{"iss":"https://evil.example",`, 1))), CodeInvalidRequest},
		{"malformed JWS", "not.a-jws", CodeInvalidRequest},
		{"garbage", "hello", CodeInvalidRequest},
		{"trailing newline", good(valid()) + "\n", CodeInvalidRequest},
		{"unrequested verification state", func() string { _, tok := tx.verificationSET("stream-x", "forged"); return tok }(), CodeInvalidState},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, e, body := post(t, url, "application/secevent+jwt", testPushHdr, tc.token)
			if status != http.StatusBadRequest || e.Err != tc.code || e.Description == "" {
				t.Errorf("got %d %s, want 400 err=%s", status, body, tc.code)
			}
		})
	}
	if n := len(rx.Received()); n != 0 {
		t.Errorf("%d invalid SETs were stored", n)
	}
	if n := len(rx.Rejected()); n != len(cases) {
		t.Errorf("Rejected() has %d entries, want %d", n, len(cases))
	}
}

func TestPushAcceptsSpecAlternatives(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)
	cases := map[string]string{
		"full media type in typ": sign(jose.RS256, keyA(), "k1", "application/secevent+jwt",
			mustJSON(tx.claims(EventDeviceComplianceChange, compliance()))),
		"no kid with a single usable key": func() string {
			tx.mu.Lock()
			tx.keys = tx.keys[:1]
			tx.mu.Unlock()
			if err := rx.RefreshJWKS(context.Background()); err != nil {
				t.Fatal(err)
			}
			return sign(jose.RS256, keyA(), "", "secevent+jwt", mustJSON(tx.claims(EventSessionRevoked, map[string]any{})))
		}(),
		"risk level change, aud array, no txn": func() string {
			c := tx.claims(EventRiskLevelChange, map[string]any{
				"principal": "DEVICE", "current_level": "HIGH", "previous_level": "LOW", "risk_reason": "JAILBROKEN",
			})
			c["aud"] = []string{"https://someone-else.example", testAud}
			delete(c, "txn")
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": tx.issuer, "sub": "device-42"}
			return good(c)
		}(),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if status, _, body := post(t, url, "application/secevent+jwt; charset=utf-8", testPushHdr, tok); status != http.StatusAccepted {
				t.Fatalf("got %d %s, want 202", status, body)
			}
		})
	}
	set, err := rx.WaitFor(ctxT(t), func(s SET) bool { return s.EventType == EventRiskLevelChange })
	if err != nil {
		t.Fatal(err)
	}
	rl, ok := set.RiskLevelChange()
	if !ok || rl.Principal != "DEVICE" || rl.CurrentLevel != "HIGH" || rl.PreviousLevel != "LOW" || rl.RiskReason != "JAILBROKEN" {
		t.Errorf("RiskLevelChange() = %+v, %v", rl, ok)
	}
	if set.Subject.Format != "iss_sub" || set.Subject.Sub != "device-42" {
		t.Errorf("subject = %+v", set.Subject)
	}
}

func TestPushReplayRejected(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)
	tok := good(tx.claims(EventSessionRevoked, map[string]any{}))
	if status, _, _ := post(t, url, "application/secevent+jwt", testPushHdr, tok); status != http.StatusAccepted {
		t.Fatalf("first delivery: %d", status)
	}
	status, e, _ := post(t, url, "application/secevent+jwt", testPushHdr, tok)
	if status != http.StatusBadRequest || e.Err != CodeInvalidRequest || !strings.Contains(e.Description, "replay") {
		t.Errorf("replay: got %d %+v", status, e)
	}
	if n := len(rx.Received()); n != 1 {
		t.Errorf("Received() = %d, want 1", n)
	}
}

func TestPushKeyRotation(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)
	if n := rx.JWKSFetches(); n != 1 {
		t.Fatalf("JWKS fetched %d times after Discover", n)
	}
	// The transmitter rotates to a key the receiver has not seen yet.
	tx.mu.Lock()
	tx.keys = append(tx.keys, jose.JSONWebKey{Key: &keyB().PublicKey, KeyID: "k2", Algorithm: "RS256", Use: "sig"})
	tx.mu.Unlock()
	tok := sign(jose.RS256, keyB(), "k2", "secevent+jwt", mustJSON(tx.claims(EventSessionRevoked, map[string]any{})))
	if status, _, body := post(t, url, "application/secevent+jwt", testPushHdr, tok); status != http.StatusAccepted {
		t.Fatalf("rotated key: got %d %s", status, body)
	}
	if n := rx.JWKSFetches(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (one refetch on the unknown kid)", n)
	}
	// A known kid must not trigger a refetch; an unknown one refetches once and fails.
	if status, _, _ := post(t, url, "application/secevent+jwt", testPushHdr, good(tx.claims(EventSessionRevoked, map[string]any{}))); status != http.StatusAccepted {
		t.Fatalf("old key: %d", status)
	}
	tok = sign(jose.RS256, keyB(), "k3", "secevent+jwt", mustJSON(tx.claims(EventSessionRevoked, map[string]any{})))
	if status, e, _ := post(t, url, "application/secevent+jwt", testPushHdr, tok); status != http.StatusBadRequest || e.Err != CodeInvalidKey {
		t.Errorf("unknown kid: %d %+v", status, e)
	}
	if n := rx.JWKSFetches(); n != 3 {
		t.Errorf("JWKS fetched %d times, want 3", n)
	}
}

func TestPushHTTPLevel(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	url := pushServer(t, rx)
	tok := good(tx.claims(EventSessionRevoked, map[string]any{}))
	cases := []struct {
		name, ct, auth string
		want           int
	}{
		{"wrong content type", "application/json", testPushHdr, http.StatusUnsupportedMediaType},
		{"jwt content type", "application/jwt", testPushHdr, http.StatusUnsupportedMediaType},
		{"missing content type", "", testPushHdr, http.StatusUnsupportedMediaType},
		{"missing authorization", "application/secevent+jwt", "", http.StatusUnauthorized},
		{"wrong authorization", "application/secevent+jwt", "Bearer guess", http.StatusUnauthorized},
		{"authorization prefix only", "application/secevent+jwt", "Bearer push", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		status, _, _ := post(t, url, tc.ct, tc.auth, tok)
		if status != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, status, tc.want)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	if n := len(rx.Received()); n != 0 {
		t.Fatalf("a refused request stored a SET")
	}

	// Down: 503 and counted; back up: the same SET is accepted (retry).
	before := rx.PushRequests()
	rx.SetDown(true)
	for range 3 {
		if status, _, _ := post(t, url, "application/secevent+jwt", testPushHdr, tok); status != http.StatusServiceUnavailable {
			t.Errorf("down: got %d, want 503", status)
		}
	}
	rx.SetDown(false)
	if status, _, _ := post(t, url, "application/secevent+jwt", testPushHdr, tok); status != http.StatusAccepted {
		t.Errorf("retry after recovery: %d", status)
	}
	if got := rx.PushRequests() - before; got != 4 {
		t.Errorf("PushRequests grew by %d, want 4", got)
	}
}

func TestWaitForTimesOut(t *testing.T) {
	rx := New("https://tx.example", "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := rx.WaitFor(ctx, func(SET) bool { return true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor = %v, want deadline exceeded", err)
	}
}

func TestPollAcksMoreAvailableAndSetErrs(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	ctx := ctxT(t)
	cfg, err := rx.CreateStream(ctx, StreamConfig{EventsRequested: []string{EventDeviceComplianceChange}})
	if err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for i := range 4 {
		c := tx.claims(EventDeviceComplianceChange, compliance())
		tok := good(c)
		if i == 2 { // signed with a key the transmitter never published
			tok = sign(jose.RS256, keyB(), "k1", "secevent+jwt", mustJSON(c))
		}
		tx.enqueue(c, tok)
		jtis = append(jtis, c["jti"].(string))
	}

	sets, more, err := rx.Poll(ctx, cfg.StreamID, nil, 2, true)
	if err != nil || !more || len(sets) != 2 || sets[0].JTI != jtis[0] || sets[1].JTI != jtis[1] {
		t.Fatalf("poll 1: %d sets, more=%v, err=%v", len(sets), more, err)
	}
	req := tx.polls[0]
	if string(req["maxEvents"]) != "2" || string(req["returnImmediately"]) != "true" || string(req["ack"]) != "[]" {
		t.Errorf("poll 1 request = %s", mustJSON(req))
	}

	sets, more, err = rx.Poll(ctx, cfg.StreamID, []string{jtis[0], jtis[1]}, 2, true)
	if err != nil || more || len(sets) != 1 || sets[0].JTI != jtis[3] {
		t.Fatalf("poll 2: %d sets, more=%v, err=%v", len(sets), more, err)
	}
	if r := rx.Rejected(); len(r) != 1 || r[0].Code != CodeInvalidKey || r[0].Via != "poll" {
		t.Errorf("Rejected() = %+v", r)
	}

	// Acknowledge-only request carrying the last ack and the setErrs.
	sets, more, err = rx.Poll(ctx, cfg.StreamID, []string{jtis[3]}, 0, true)
	if err != nil || more || len(sets) != 0 {
		t.Fatalf("poll 3: %d sets, more=%v, err=%v", len(sets), more, err)
	}
	if e := tx.gotErrs[jtis[2]]; e.Err != CodeInvalidKey || e.Description == "" {
		t.Errorf("transmitter got setErrs %+v", tx.gotErrs)
	}
	if tx.queueLen() != 0 {
		t.Errorf("queue not drained: %d left", tx.queueLen())
	}
	if want := []string{jtis[0], jtis[1], jtis[3]}; !slicesEqual(tx.acked, want) {
		t.Errorf("acked %v, want %v", tx.acked, want)
	}
	// setErrs is reported once.
	if _, _, err := rx.Poll(ctx, cfg.StreamID, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := tx.polls[3]["setErrs"]; ok {
		t.Errorf("setErrs sent twice: %s", mustJSON(tx.polls[3]))
	}
}

func TestPollAll(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	ctx := ctxT(t)
	cfg, err := rx.CreateStream(ctx, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c := tx.claims(EventSessionRevoked, map[string]any{})
		tx.enqueue(c, good(c))
	}
	sets, err := rx.PollAll(ctx, cfg.Delivery.EndpointURL, 2)
	if err != nil || len(sets) != 5 {
		t.Fatalf("PollAll: %d sets, %v", len(sets), err)
	}
	if tx.queueLen() != 0 || len(tx.acked) != 5 {
		t.Errorf("queue %d, acked %v", tx.queueLen(), tx.acked)
	}
	if last := tx.polls[len(tx.polls)-1]; string(last["maxEvents"]) != "0" {
		t.Errorf("last request %s is not acknowledge-only", mustJSON(last))
	}
}

func TestPollRefusesNonConformantAnswers(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	ctx := ctxT(t)
	cfg, err := rx.CreateStream(ctx, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// A SET listed under a name that is not its jti.
	c := tx.claims(EventSessionRevoked, map[string]any{})
	tx.enqueue(map[string]any{"jti": "other"}, good(c))
	sets, _, err := rx.Poll(ctx, cfg.StreamID, nil, 10, true)
	if err != nil || len(sets) != 0 {
		t.Fatalf("mismatched jti: %d sets, %v", len(sets), err)
	}
	if _, _, err := rx.Poll(ctx, cfg.StreamID, nil, 10, true); err != nil {
		t.Fatal(err)
	}
	if e := tx.gotErrs["other"]; e.Err != CodeInvalidRequest {
		t.Errorf("setErrs = %+v", tx.gotErrs)
	}
	// More SETs than maxEvents.
	tx.mu.Lock()
	tx.overMax = true
	tx.mu.Unlock()
	for range 3 {
		c := tx.claims(EventSessionRevoked, map[string]any{})
		tx.enqueue(c, good(c))
	}
	if _, _, err := rx.Poll(ctx, cfg.StreamID, nil, 1, true); !errors.Is(err, ErrNonConformant) {
		t.Errorf("too many SETs: %v", err)
	}
	if _, _, err := rx.Poll(ctx, "no-such-stream", nil, 1, true); err == nil {
		t.Error("unknown stream id accepted")
	}
}

func TestStreamManagement(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	ctx := ctxT(t)

	cfg, err := rx.CreateStream(ctx, StreamConfig{
		EventsRequested: []string{EventDeviceComplianceChange, "urn:example:unsupported"},
		Description:     "e2e",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Iss != tx.issuer || cfg.Delivery.Method != DeliveryPoll || cfg.Description != "e2e" ||
		!slicesEqual(cfg.EventsDelivered, []string{EventDeviceComplianceChange}) {
		t.Errorf("created %+v", cfg)
	}
	if got, err := rx.GetStream(ctx, cfg.StreamID); err != nil || got.StreamID != cfg.StreamID {
		t.Errorf("GetStream: %+v, %v", got, err)
	}
	var he *HTTPError
	if _, err := rx.GetStream(ctx, "missing"); !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Errorf("GetStream(missing) = %v, want HTTP 404", err)
	}
	if list, err := rx.ListStreams(ctx); err != nil || len(list) != 1 {
		t.Errorf("ListStreams: %v, %v", list, err)
	}
	if got, err := rx.UpdateStream(ctx, map[string]any{"stream_id": cfg.StreamID, "description": "renamed"}); err != nil || got.Description != "renamed" {
		t.Errorf("UpdateStream: %+v, %v", got, err)
	}
	if st, err := rx.SetStatus(ctx, cfg.StreamID, StatusPaused, "maintenance"); err != nil || st.Status != StatusPaused {
		t.Errorf("SetStatus: %+v, %v", st, err)
	}
	if st, err := rx.GetStatus(ctx, cfg.StreamID); err != nil || st.Status != StatusPaused {
		t.Errorf("GetStatus: %+v, %v", st, err)
	}
	verified := true
	if err := rx.AddSubject(ctx, cfg.StreamID, &Subject{Format: "email", Email: "user@example.com"}, &verified); err != nil {
		t.Fatal(err)
	}
	var added struct {
		StreamID string          `json:"stream_id"`
		Subject  json.RawMessage `json:"subject"`
		Verified *bool           `json:"verified"`
	}
	_ = json.Unmarshal(tx.subjects[0], &added)
	if added.StreamID != cfg.StreamID || string(added.Subject) != `{"email":"user@example.com","format":"email"}` || added.Verified == nil || !*added.Verified {
		t.Errorf("add subject body = %s", tx.subjects[0])
	}
	if err := rx.RemoveSubject(ctx, cfg.StreamID, map[string]string{"format": "opaque", "id": "x"}); err != nil {
		t.Error(err)
	}

	// Verification: the requested state is accepted once; a state nobody
	// requested is refused and reported back with invalid_state.
	if err := rx.RequestVerification(ctx, cfg.StreamID, "state-1"); err != nil {
		t.Fatal(err)
	}
	tx.enqueue(tx.verificationSET(cfg.StreamID, "forged"))
	sets, err := rx.PollAll(ctx, cfg.StreamID, 10)
	if err != nil || len(sets) != 1 {
		t.Fatalf("PollAll: %d sets, %v", len(sets), err)
	}
	if state, ok := sets[0].Verification(); !ok || state != "state-1" {
		t.Errorf("Verification() = %q, %v", state, ok)
	}
	if len(tx.gotErrs) != 1 {
		t.Errorf("setErrs = %+v", tx.gotErrs)
	}
	for _, e := range tx.gotErrs {
		if e.Err != CodeInvalidState {
			t.Errorf("setErrs = %+v", tx.gotErrs)
		}
	}

	other := New(tx.issuer, "wrong-token", tx.srv.Client())
	if _, err := other.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetStream(ctx, cfg.StreamID); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Errorf("wrong bearer: %v, want HTTP 401", err)
	}

	if err := rx.DeleteStream(ctx, cfg.StreamID); err != nil {
		t.Fatal(err)
	}
	if err := rx.DeleteStream(ctx, cfg.StreamID); !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Errorf("second delete: %v", err)
	}
}

func TestStreamConfigValidation(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	base := map[string]any{
		"stream_id": "s1", "iss": tx.issuer, "aud": testAud, "events_delivered": []string{},
		"delivery": map[string]any{"method": DeliveryPoll, "endpoint_url": tx.srv.URL + "/poll"},
	}
	cases := map[string]func(m map[string]any){
		"ok":                  func(map[string]any) {},
		"iss differs":         func(m map[string]any) { m["iss"] = tx.issuer + "/" },
		"no aud":              func(m map[string]any) { delete(m, "aud") },
		"foreign aud":         func(m map[string]any) { m["aud"] = []string{"https://x.example"} },
		"no events_delivered": func(m map[string]any) { delete(m, "events_delivered") },
		"delivered not supported": func(m map[string]any) {
			m["events_supported"] = []string{EventSessionRevoked}
			m["events_delivered"] = []string{EventRiskLevelChange}
		},
		"poll without endpoint": func(m map[string]any) { m["delivery"] = map[string]any{"method": DeliveryPoll} },
		"unknown method": func(m map[string]any) {
			m["delivery"] = map[string]any{"method": "urn:x", "endpoint_url": "https://a.example"}
		},
		"no stream_id": func(m map[string]any) { delete(m, "stream_id") },
	}
	for name, edit := range cases {
		m := maps.Clone(base)
		edit(m)
		_, err := rx.checkStream(mustJSON(m), "", "")
		if (name == "ok") != (err == nil) {
			t.Errorf("%s: err = %v", name, err)
		}
		if err != nil && !errors.Is(err, ErrNonConformant) {
			t.Errorf("%s: %v does not wrap ErrNonConformant", name, err)
		}
	}
}

func TestDiscovery(t *testing.T) {
	cases := []struct {
		name    string
		path    string
		edit    func(doc map[string]any)
		methods []string
		ok      bool
	}{
		{"valid", "", nil, []string{DeliveryPoll, DeliveryPush}, true},
		{"issuer with path", "/tenants/t1", nil, nil, true},
		{"issuer mismatch", "", func(d map[string]any) { d["issuer"] = d["issuer"].(string) + "/" }, nil, false},
		{"issuer of another host", "", func(d map[string]any) { d["issuer"] = "https://tx.example" }, nil, false},
		{"no jwks_uri", "", func(d map[string]any) { delete(d, "jwks_uri") }, nil, false},
		{"method not supported", "", func(d map[string]any) { d["delivery_methods_supported"] = []string{DeliveryPush} }, []string{DeliveryPoll}, false},
		{"empty array member", "", func(d map[string]any) { d["critical_subject_members"] = []string{} }, nil, false},
		{"bad default_subjects", "", func(d map[string]any) { d["default_subjects"] = "SOME" }, nil, false},
		{"relative endpoint", "", func(d map[string]any) { d["configuration_endpoint"] = "/ssf/stream" }, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tx := newTestTx(t, tc.path)
			tx.docEdit = tc.edit
			rx := New(tx.issuer, testBearer, tx.srv.Client())
			cfg, err := rx.Discover(ctxT(t), tc.methods...)
			if tc.ok {
				if err != nil || cfg.Issuer != tx.issuer || cfg.ConfigurationEndpoint == "" {
					t.Fatalf("Discover: %+v, %v", cfg, err)
				}
				return
			}
			if !errors.Is(err, ErrNonConformant) {
				t.Fatalf("Discover = %v, want ErrNonConformant", err)
			}
			if rx.Config() != nil {
				t.Error("a refused configuration was kept")
			}
		})
	}
}

func TestDiscoveryRefusesPrivateJWK(t *testing.T) {
	tx := newTestTx(t, "")
	tx.keys = append(tx.keys, jose.JSONWebKey{Key: keyB(), KeyID: "oops", Use: "sig"})
	rx := New(tx.issuer, testBearer, tx.srv.Client())
	if _, err := rx.Discover(ctxT(t)); !errors.Is(err, ErrNonConformant) {
		t.Errorf("Discover = %v, want ErrNonConformant", err)
	}
}

func TestWellKnownURL(t *testing.T) {
	cases := map[string]string{
		"https://tr.example.com":         "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/":        "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/issuer1": "https://tr.example.com/.well-known/ssf-configuration/issuer1",
		"https://tr.example.com/a/b/":    "https://tr.example.com/.well-known/ssf-configuration/a/b",
		"http://127.0.0.1:1234":          "http://127.0.0.1:1234/.well-known/ssf-configuration",
		"https://tr.example.com/?q=1":    "",
		"https://tr.example.com/#frag":   "",
		"tr.example.com":                 "",
	}
	for in, want := range cases {
		got, err := WellKnownURL(in)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("WellKnownURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseSubject(t *testing.T) {
	valid := []string{
		`{"format":"account","uri":"acct:user@service.example.com"}`,
		`{"format":"email","email":"user@example.com"}`,
		`{"format":"iss_sub","iss":"https://issuer.example.com/","sub":"145234573"}`,
		`{"format":"opaque","id":"11112222333344445555"}`,
		`{"format":"phone_number","phone_number":"+12065550100"}`,
		`{"format":"did","url":"did:example:123456"}`,
		`{"format":"uri","uri":"https://user.example.com/"}`,
		`{"format":"aliases","identifiers":[{"format":"email","email":"a@example.com"},{"format":"opaque","id":"x"}]}`,
		`{"format":"jwt_id","iss":"https://idp.example.com/","jti":"B70BA622"}`,
		`{"format":"saml_assertion_id","issuer":"https://idp.example.com/","assertion_id":"_8e8dc5f6"}`,
		`{"format":"ip-addresses","ip-addresses":["10.29.37.75","2001:db8::1"]}`,
		`{"format":"complex","user":{"format":"email","email":"a@example.com"},"device":{"format":"opaque","id":"d"},"printer":{"format":"opaque","id":"p"}}`,
	}
	for _, s := range valid {
		sub, err := ParseSubject(json.RawMessage(s))
		if err != nil {
			t.Errorf("ParseSubject(%s): %v", s, err)
			continue
		}
		// Re-encoding yields an equivalent identifier.
		again, err := ParseSubject(mustJSON(sub))
		if err != nil || string(mustJSON(again)) != string(mustJSON(sub)) {
			t.Errorf("round trip of %s: %s, %v", s, mustJSON(again), err)
		}
	}
	invalid := []string{
		`{"format":"serial_number","serial":"C02"}`,
		`{"email":"user@example.com"}`,
		`{"format":"email"}`,
		`{"format":"email","email":""}`,
		`{"format":"email","email":"not an address"}`,
		`{"format":"email","email":"a@example.com","id":"x"}`,
		`{"format":"opaque","id":42}`,
		`{"format":"phone_number","phone_number":"+1 206 555 0100"}`,
		`{"format":"account","uri":"mailto:a@example.com"}`,
		`{"format":"aliases","identifiers":[]}`,
		`{"format":"aliases","identifiers":[{"format":"aliases","identifiers":[{"format":"opaque","id":"x"}]}]}`,
		`{"format":"ip-addresses","ip-addresses":["300.1.1.1"]}`,
		`{"format":"complex"}`,
		`{"format":"complex","user":{"format":"complex","device":{"format":"opaque","id":"d"}}}`,
		`{"format":"complex","user":{"format":"nope"}}`,
		`{"format":"opaque","id":"a","id":"b"}`,
		`"opaque"`,
	}
	for _, s := range invalid {
		if _, err := ParseSubject(json.RawMessage(s)); err == nil {
			t.Errorf("ParseSubject(%s) accepted", s)
		}
	}
}

func TestCriticalSubjectMembers(t *testing.T) {
	tx := newTestTx(t, "")
	tx.docEdit = func(d map[string]any) { d["critical_subject_members"] = []string{"printer", "user"} }
	rx := newRx(t, tx)
	c := tx.claims(EventSessionRevoked, map[string]any{})
	c["sub_id"] = map[string]any{"format": "complex", "printer": map[string]any{"format": "opaque", "id": "p"}}
	if _, err := rx.VerifySET(good(c)); err == nil {
		t.Error("a SET with a critical member the receiver does not understand was accepted")
	}
	c = tx.claims(EventSessionRevoked, map[string]any{})
	c["sub_id"] = map[string]any{"format": "complex", "user": map[string]any{"format": "opaque", "id": "u"}}
	if _, err := rx.VerifySET(good(c)); err != nil {
		t.Errorf("critical but understood member refused: %v", err)
	}
}

func TestVerifySETWithoutAudience(t *testing.T) {
	tx := newTestTx(t, "")
	rx := New(tx.issuer, testBearer, tx.srv.Client())
	if _, err := rx.Discover(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_, err := rx.VerifySET(good(tx.claims(EventSessionRevoked, map[string]any{})))
	var se *SETError
	if !errors.As(err, &se) || se.Code != CodeInvalidAudience {
		t.Errorf("VerifySET without a configured audience = %v", err)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPushStreamUsesItsAuthorizationHeader(t *testing.T) {
	tx := newTestTx(t, "")
	rx := newRx(t, tx)
	srv := httptest.NewServer(rx.PushHandler())
	defer srv.Close()
	ctx := ctxT(t)
	cfg, err := rx.CreateStream(ctx, StreamConfig{
		EventsRequested: []string{EventDeviceComplianceChange},
		Delivery:        &Delivery{Method: DeliveryPush, EndpointURL: srv.URL, AuthorizationHeader: "Bearer stream-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rx.Poll(ctx, cfg.StreamID, nil, 1, true); err == nil {
		t.Error("Poll accepted a push stream")
	}
	c := tx.claims(EventStreamUpdated, map[string]any{"status": "paused", "reason": "maintenance"})
	c["sub_id"] = map[string]any{"format": "opaque", "id": cfg.StreamID}
	tok := good(c)
	if status, _, _ := post(t, srv.URL, "application/secevent+jwt", "Bearer other", tok); status != http.StatusUnauthorized {
		t.Errorf("foreign authorization: %d, want 401", status)
	}
	if status, _, body := post(t, srv.URL, "application/secevent+jwt", "Bearer stream-secret", tok); status != http.StatusAccepted {
		t.Fatalf("stream authorization: %d %s", status, body)
	}
	su, ok := rx.Received()[0].StreamUpdated()
	if !ok || su.Status != StatusPaused || su.Reason != "maintenance" {
		t.Errorf("StreamUpdated() = %+v, %v", su, ok)
	}
	// A stream event must name the stream with an opaque sub_id.
	c = tx.claims(EventStreamUpdated, map[string]any{"status": "enabled"})
	c["sub_id"] = map[string]any{"format": "email", "email": "a@example.com"}
	if status, e, _ := post(t, srv.URL, "application/secevent+jwt", "Bearer stream-secret", good(c)); status != http.StatusBadRequest || e.Err != CodeInvalidRequest {
		t.Errorf("stream-updated with email sub_id: %d %+v", status, e)
	}
	if _, err := rx.UpdateStream(ctx, StreamConfig{Description: "no id"}); err == nil {
		t.Error("UpdateStream without stream_id was sent")
	}
}
