// Package ssfrx is a strict OpenID Shared Signals Framework (SSF) 1.0
// receiver, meant for end-to-end tests of an SSF transmitter.
//
// It is written from the specifications only: OpenID SSF 1.0 (final), OpenID
// CAEP 1.0, RFC 8417 (Security Event Token), RFC 8935 (push delivery),
// RFC 8936 (poll delivery), RFC 9493 (subject identifiers) and RFC 7515/7517/
// 7519 (JWS, JWK, JWT). It shares no code with the transmitter under test and
// deliberately refuses anything those documents forbid, so that a test using
// it fails when the transmitter drifts from the specifications.
//
// A typical test:
//
//	rx := ssfrx.New(issuer, accessToken, client)
//	rx.SetAudience("https://receiver.example")
//	if _, err := rx.Discover(ctx, ssfrx.DeliveryPoll); err != nil { ... }
//	cfg, err := rx.CreateStream(ctx, ssfrx.StreamConfig{EventsRequested: ...})
//	sets, err := rx.PollAll(ctx, cfg.StreamID, 10)
//
// or, for push delivery, serve rx.PushHandler() and use rx.WaitFor.
package ssfrx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Delivery method URIs (SSF 1.0 §6.1).
const (
	DeliveryPush = "urn:ietf:rfc:8935"
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// Event type URIs understood by the receiver (SSF 1.0 §8.1.4-8.1.5, CAEP 1.0 §3).
const (
	EventVerification           = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated          = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
	caepPrefix                  = "https://schemas.openid.net/secevent/caep/event-type/"
	EventSessionRevoked         = caepPrefix + "session-revoked"
	EventTokenClaimsChange      = caepPrefix + "token-claims-change"
	EventCredentialChange       = caepPrefix + "credential-change"
	EventAssuranceLevelChange   = caepPrefix + "assurance-level-change"
	EventDeviceComplianceChange = caepPrefix + "device-compliance-change"
	EventSessionEstablished     = caepPrefix + "session-established"
	EventSessionPresented       = caepPrefix + "session-presented"
	EventRiskLevelChange        = caepPrefix + "risk-level-change"
)

// MaxClockSkew is the tolerance applied to "iat" and "nbf" in the future.
const MaxClockSkew = 5 * time.Minute

const maxBody = 4 << 20

// ErrNonConformant is wrapped by every error that reports a transmitter
// response (discovery document, JWKS, stream management answer, poll answer)
// that violates the specifications.
var ErrNonConformant = errors.New("ssfrx: transmitter response does not conform to the specification")

// ErrAccepted is returned when the transmitter answers 202 Accepted to an
// update, replace or status change: SSF 1.0 allows it to mean "accepted but
// not processed yet; retry later".
var ErrAccepted = errors.New("ssfrx: request accepted but not yet processed (202)")

func nonConformant(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNonConformant, fmt.Sprintf(format, args...))
}

// HTTPError is returned when the transmitter answers with a status code other
// than the one the specification prescribes for success.
type HTTPError struct {
	Method string
	URL    string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("ssfrx: %s %s: HTTP %d: %s", e.Method, e.URL, e.Status, e.Body)
}

// Rejection records a SET the receiver refused, for tests that want to assert
// that a transmitter never sent anything invalid.
type Rejection struct {
	Via         string // "push" or "poll"
	Code        string // RFC 8935 / SSF error code
	Description string
	Token       string
	At          time.Time
}

// Receiver is an SSF receiver bound to one transmitter issuer. All methods are
// safe for concurrent use.
type Receiver struct {
	issuer string
	bearer string
	client *http.Client

	down      atomic.Bool
	pushCount atomic.Int64

	mu          sync.Mutex
	config      *TransmitterConfig
	jwks        *jose.JSONWebKeySet
	jwksFetches int
	audiences   []string
	pushAuth    string
	seen        map[string]bool
	states      map[string][]string          // stream_id -> outstanding verification states
	streams     map[string]StreamConfig      // stream_id -> last configuration seen
	setErrs     map[string]map[string]SETErr // poll endpoint -> jti -> error to report
	received    []SET
	rejected    []Rejection
	notify      chan struct{}
}

// New returns a Receiver for the transmitter identified by issuer. bearer is
// sent as "Authorization: Bearer <bearer>" on stream management and poll
// requests (never on discovery or JWKS requests). A nil client means a client
// with a 30 second timeout.
func New(issuer, bearer string, client *http.Client) *Receiver {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Receiver{
		issuer:  issuer,
		bearer:  bearer,
		client:  client,
		seen:    map[string]bool{},
		states:  map[string][]string{},
		streams: map[string]StreamConfig{},
		setErrs: map[string]map[string]SETErr{},
		notify:  make(chan struct{}),
	}
}

// Issuer returns the issuer the receiver was created for.
func (r *Receiver) Issuer() string { return r.issuer }

// SetAudience sets the audience values that identify this receiver. A SET is
// accepted only if its "aud" contains at least one of them; stream
// configurations returned by the transmitter are checked the same way. Until
// an audience is set every SET is refused with invalid_audience.
func (r *Receiver) SetAudience(aud ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audiences = slices.Clone(aud)
}

// SetPushAuthorization sets the exact Authorization header value the push
// endpoint requires, i.e. the value the receiver gave the transmitter as
// delivery.authorization_header. Empty means no authorization is required.
func (r *Receiver) SetPushAuthorization(value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushAuth = value
}

// SetDown makes the push endpoint answer 503 Service Unavailable to every
// request while down is true, simulating an unavailable receiver.
func (r *Receiver) SetDown(down bool) { r.down.Store(down) }

// PushRequests returns how many requests reached the push endpoint, including
// refused ones and those answered 503.
func (r *Receiver) PushRequests() int64 { return r.pushCount.Load() }

// JWKSFetches returns how many times the JWKS was fetched.
func (r *Receiver) JWKSFetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.jwksFetches
}

// Received returns a copy of every SET accepted so far, via push or poll, in
// order of acceptance.
func (r *Receiver) Received() []SET {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.received)
}

// Rejected returns a copy of every SET refused so far.
func (r *Receiver) Rejected() []Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rejected)
}

// WaitFor returns the first accepted SET (already received or arriving later)
// for which pred returns true, or the context's error.
func (r *Receiver) WaitFor(ctx context.Context, pred func(SET) bool) (SET, error) {
	for {
		r.mu.Lock()
		for _, s := range r.received {
			if pred(s) {
				r.mu.Unlock()
				return s, nil
			}
		}
		ch := r.notify
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return SET{}, ctx.Err()
		}
	}
}

func (r *Receiver) store(s *SET) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.received = append(r.received, *s)
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *Receiver) reject(via, token string, err error) {
	code, desc := errorCode(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, Rejection{Via: via, Code: code, Description: desc, Token: token, At: time.Now()})
}

// do sends one HTTP request and returns the response body. A status not in
// want yields *HTTPError. body may be nil, []byte / json.RawMessage (sent
// verbatim) or any value marshalled as JSON.
func (r *Receiver) do(ctx context.Context, method, url string, body any, auth bool, want ...int) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case json.RawMessage:
			b = v
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return nil, nil, fmt.Errorf("ssfrx: encoding request: %w", err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("ssfrx: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth && r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("ssfrx: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("ssfrx: %s %s: reading body: %w", method, url, err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		return resp, data, &HTTPError{Method: method, URL: url, Status: resp.StatusCode, Body: string(data)}
	}
	return resp, data, nil
}
