package ssfrx

// A tiny, hand-written SSF transmitter stand-in used by the tests: it serves
// the discovery document, a JWKS, a minimal stream management API and an
// RFC 8936 poll endpoint, and signs SETs with freshly generated RSA keys.

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testAud     = "https://rx.example/ssf"
	testBearer  = "rx-access-token"
	testPushHdr = "Bearer push-secret"
)

func genKey(bits int) func() *rsa.PrivateKey {
	return sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	})
}

var (
	keyA    = genKey(2048) // the transmitter's key, kid "k1"
	keyB    = genKey(2048) // a rotated-in key, or a key nobody published
	keyWeak = genKey(1024) // published as "weak": too small
)

type queued struct{ name, token string }

type testTx struct {
	srv    *httptest.Server
	issuer string

	mu       sync.Mutex
	keys     []jose.JSONWebKey // published in the JWKS
	docEdit  func(map[string]any)
	queue    []queued
	acked    []string
	gotErrs  map[string]SETErr
	polls    []map[string]json.RawMessage
	overMax  bool // ignore maxEvents
	streams  map[string]map[string]any
	status   map[string]string
	subjects [][]byte
	nextID   int
	jtiN     int
}

var supportedEvents = []string{EventDeviceComplianceChange, EventRiskLevelChange, EventSessionRevoked}

func newTestTx(t *testing.T, issuerPath string) *testTx {
	t.Helper()
	tx := &testTx{
		keys: []jose.JSONWebKey{
			{Key: &keyA().PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
			{Key: &keyWeak().PublicKey, KeyID: "weak", Use: "sig"},
		},
		gotErrs: map[string]SETErr{},
		streams: map[string]map[string]any{},
		status:  map[string]string{},
	}
	mux := http.NewServeMux()
	tx.srv = httptest.NewServer(mux)
	t.Cleanup(tx.srv.Close)
	base := tx.srv.URL
	tx.issuer = base + issuerPath

	mux.HandleFunc("GET /.well-known/ssf-configuration"+issuerPath, func(w http.ResponseWriter, r *http.Request) {
		doc := map[string]any{
			"spec_version":               "1_0",
			"issuer":                     tx.issuer,
			"jwks_uri":                   base + "/jwks",
			"delivery_methods_supported": []string{DeliveryPush, DeliveryPoll},
			"configuration_endpoint":     base + "/ssf/stream",
			"status_endpoint":            base + "/ssf/status",
			"add_subject_endpoint":       base + "/ssf/subjects:add",
			"remove_subject_endpoint":    base + "/ssf/subjects:remove",
			"verification_endpoint":      base + "/ssf/verify",
			"authorization_schemes":      []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}},
			"default_subjects":           "NONE",
		}
		tx.mu.Lock()
		if tx.docEdit != nil {
			tx.docEdit(doc)
		}
		tx.mu.Unlock()
		writeJSON(w, http.StatusOK, doc)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		tx.mu.Lock()
		defer tx.mu.Unlock()
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: tx.keys})
	})
	mux.HandleFunc("/ssf/stream", tx.authed(tx.handleStream))
	mux.HandleFunc("/ssf/status", tx.authed(tx.handleStatus))
	mux.HandleFunc("POST /ssf/subjects:add", tx.authed(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		tx.mu.Lock()
		tx.subjects = append(tx.subjects, buf.Bytes())
		tx.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	mux.HandleFunc("POST /ssf/subjects:remove", tx.authed(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /ssf/verify", tx.authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			StreamID string `json:"stream_id"`
			State    string `json:"state"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || tx.stream(req.StreamID) == nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		tx.enqueue(tx.verificationSET(req.StreamID, req.State))
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /ssf/poll/{id}", tx.authed(tx.handlePoll))
	return tx
}

func (tx *testTx) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testBearer {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (tx *testTx) stream(id string) map[string]any {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.streams[id]
}

func (tx *testTx) handleStream(w http.ResponseWriter, r *http.Request) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	id := r.URL.Query().Get("stream_id")
	switch r.Method {
	case http.MethodPost:
		var req map[string]any
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		tx.nextID++
		id = fmt.Sprintf("stream-%d", tx.nextID)
		delivery, _ := req["delivery"].(map[string]any)
		if delivery == nil {
			delivery = map[string]any{"method": DeliveryPoll}
		}
		if delivery["method"] == DeliveryPoll {
			delivery["endpoint_url"] = tx.srv.URL + "/ssf/poll/" + id
		}
		cfg := map[string]any{
			"stream_id": id, "iss": tx.issuer, "aud": testAud, "delivery": delivery,
			"events_supported": supportedEvents, "events_delivered": []string{},
		}
		if req["events_requested"] != nil {
			cfg["events_requested"] = req["events_requested"]
			var delivered []string
			for _, e := range req["events_requested"].([]any) {
				if slices.Contains(supportedEvents, e.(string)) {
					delivered = append(delivered, e.(string))
				}
			}
			cfg["events_delivered"] = delivered
		}
		if d, ok := req["description"]; ok {
			cfg["description"] = d
		}
		tx.streams[id] = cfg
		tx.status[id] = StatusEnabled
		writeJSON(w, http.StatusCreated, cfg)
	case http.MethodGet:
		if id == "" {
			list := []map[string]any{}
			for _, c := range tx.streams {
				list = append(list, c)
			}
			writeJSON(w, http.StatusOK, list)
			return
		}
		if tx.streams[id] == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, tx.streams[id])
	case http.MethodPatch:
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		cfg := tx.streams[fmt.Sprint(req["stream_id"])]
		if cfg == nil {
			http.NotFound(w, r)
			return
		}
		if d, ok := req["description"]; ok {
			cfg["description"] = d
		}
		writeJSON(w, http.StatusOK, cfg)
	case http.MethodDelete:
		if tx.streams[id] == nil {
			http.NotFound(w, r)
			return
		}
		delete(tx.streams, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}

func (tx *testTx) handleStatus(w http.ResponseWriter, r *http.Request) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	var st StreamStatus
	if r.Method == http.MethodPost {
		_ = json.NewDecoder(r.Body).Decode(&st)
		if tx.streams[st.StreamID] == nil {
			http.NotFound(w, r)
			return
		}
		tx.status[st.StreamID] = st.Status
	} else {
		st.StreamID = r.URL.Query().Get("stream_id")
		if tx.streams[st.StreamID] == nil {
			http.NotFound(w, r)
			return
		}
		st.Status = tx.status[st.StreamID]
	}
	writeJSON(w, http.StatusOK, st)
}

// handlePoll implements RFC 8936 over the queue: acked and setErrs entries
// leave the queue; up to maxEvents queued SETs are returned in queue order.
func (tx *testTx) handlePoll(w http.ResponseWriter, r *http.Request) {
	var raw map[string]json.RawMessage
	var req PollRequest
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	if json.Unmarshal(buf.Bytes(), &raw) != nil || json.Unmarshal(buf.Bytes(), &req) != nil ||
		r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.polls = append(tx.polls, raw)
	drop := func(name string) {
		tx.queue = slices.DeleteFunc(tx.queue, func(q queued) bool { return q.name == name })
	}
	for _, a := range req.Ack {
		tx.acked = append(tx.acked, a)
		drop(a)
	}
	for jti, e := range req.SetErrs {
		tx.gotErrs[jti] = e
		drop(jti)
	}
	n := len(tx.queue)
	if req.MaxEvents != nil && !tx.overMax && *req.MaxEvents < n {
		n = *req.MaxEvents
	}
	var b bytes.Buffer
	b.WriteString(`{"sets":{`)
	for i, q := range tx.queue[:n] {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(q.name)
		v, _ := json.Marshal(q.token)
		fmt.Fprintf(&b, "%s:%s", k, v)
	}
	fmt.Fprintf(&b, `},"moreAvailable":%t}`, n < len(tx.queue))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b.Bytes())
}

func (tx *testTx) enqueue(c map[string]any, token string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.queue = append(tx.queue, queued{name: c["jti"].(string), token: token})
}

func (tx *testTx) queueLen() int {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return len(tx.queue)
}

// claims returns a valid SET claims set for one event with a complex subject.
func (tx *testTx) claims(event string, payload any) map[string]any {
	tx.mu.Lock()
	tx.jtiN++
	jti := fmt.Sprintf("jti-%04d", tx.jtiN)
	tx.mu.Unlock()
	return map[string]any{
		"iss": tx.issuer, "aud": testAud, "iat": time.Now().Unix(), "jti": jti, "txn": "txn-" + jti,
		"sub_id": map[string]any{
			"format": "complex",
			"device": map[string]any{"format": "opaque", "id": "device-42"},
			"tenant": map[string]any{"format": "opaque", "id": "tenant-1"},
		},
		"events": map[string]any{event: payload},
	}
}

func compliance() map[string]any {
	return map[string]any{
		"previous_status": "compliant", "current_status": "not-compliant",
		"event_timestamp": 1700000000, "initiating_entity": "policy",
		"reason_admin": map[string]string{"en": "Disk encryption disabled"},
	}
}

func (tx *testTx) verificationSET(streamID, state string) (map[string]any, string) {
	c := tx.claims(EventVerification, map[string]any{})
	if state != "" {
		c["events"] = map[string]any{EventVerification: map[string]any{"state": state}}
	}
	c["sub_id"] = map[string]any{"format": "opaque", "id": streamID}
	return c, sign(jose.RS256, keyA(), "k1", "secevent+jwt", mustJSON(c))
}

// sign returns a compact JWS over payload.
func sign(alg jose.SignatureAlgorithm, key any, kid, typ string, payload []byte) string {
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return tok
}

// good signs c the way a correct transmitter does.
func good(c map[string]any) string {
	return sign(jose.RS256, keyA(), "k1", "secevent+jwt", mustJSON(c))
}

// unsigned returns an "alg":"none" JWS.
func unsigned(c map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"secevent+jwt","kid":"k1"}`)) + "." + enc(mustJSON(c)) + "."
}

func publicKeyBytes() []byte {
	der, err := x509.MarshalPKIXPublicKey(&keyA().PublicKey)
	if err != nil {
		panic(err)
	}
	return der
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
