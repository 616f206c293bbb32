// Package ssf is mdmd's OpenID Shared Signals Framework 1.0 transmitter.
// It tells receivers (identity providers, access proxies) when a device's
// compliance or risk changes, as CAEP device-compliance-change and
// risk-level-change Security Event Tokens (RFC 8417), signed RS256 by a
// jwtsign key ring whose JWKS it publishes.
//
// Receivers authenticate with API tokens of role ssf_receiver that an
// administrator issues; each token sees and manages only the streams it
// created (up to MaxStreamsPerReceiver). The stream management API (SSF
// §8: configuration, status, subjects, verification) and the RFC 8936
// poll endpoint live under /api/v1/ssf; the transmitter configuration
// metadata and the JWKS are public (RegisterPublic).
//
// Events flow through the database only, so any number of replicas may
// run: Fanout reads the device event log exactly once (consumer "ssf")
// and queues one SET per matching stream, with its claims and jti fixed;
// Push leases whole push streams, signs each SET when it sends it and
// POSTs it per RFC 8935; polls hand out and acknowledge SETs per RFC 8936.
// A receiver that is down loses nothing: its stream is retried with
// backoff, in order, until the SETs expire (Options.MaxAge, 7 days).
//
// Choices the specifications leave open are documented in README.md.
package ssf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/jwtsign"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
)

// Event type URIs.
const (
	EventDeviceComplianceChange = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
	EventRiskLevelChange        = "https://schemas.openid.net/secevent/caep/event-type/risk-level-change"
	EventVerification           = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated          = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// EventsSupported are the event types a stream may request. Verification
// and stream-updated events are sent whatever a stream requested.
var EventsSupported = []string{EventDeviceComplianceChange, EventRiskLevelChange}

// TypSET is the JWS "typ" of every SET (RFC 8417 §2.3, SSF §4.1.1).
const TypSET = "secevent+jwt"

// SpecVersion is the SSF version implemented.
const SpecVersion = "1_0"

// Paths. The well-known document and the JWKS are served at the root of
// the host; the rest are under the admin API's /api/v1.
const (
	WellKnownPath     = "/.well-known/ssf-configuration"
	JWKSPath          = "/ssf/jwks.json"
	StreamsPath       = "/ssf/streams"
	StatusPath        = "/ssf/status"
	AddSubjectPath    = "/ssf/subjects/add"
	RemoveSubjectPath = "/ssf/subjects/remove"
	VerifyPath        = "/ssf/verify"
	PollPath          = "/ssf/poll/{stream_id}"
	apiPrefix         = "/api/v1"
)

// Job kinds. Run does the work of FanoutJob and PushJob continuously;
// the jobs are for deployments that prefer the job runner's schedule.
const (
	FanoutJob = "ssf.fanout"
	PushJob   = "ssf.push"
	PruneJob  = "ssf.prune"
)

// KeyRing is the jwtsign ring SETs are signed with. KeyRetention is how
// long a replaced key stays in its JWKS: SETs carry no exp, and although
// each is signed when it is sent, a receiver may verify one it stored
// later; a week covers that.
const (
	KeyRing      = "ssf"
	KeyRetention = 7 * 24 * time.Hour
)

// NewKeyring returns the key ring SETs are signed with.
func NewKeyring(st jwtsign.Store, box *secret.Box, log *slog.Logger) *jwtsign.Keyring {
	return jwtsign.New(st, box, jwtsign.Options{Ring: KeyRing, MaxTokenLifetime: KeyRetention, Logger: log})
}

// Options configure a Transmitter.
type Options struct {
	// Issuer is the transmitter's issuer: the server's external base URL
	// (https://mdmd.example.com), the "iss" of every SET. Required.
	Issuer string
	// Keys signs SETs (NewKeyring). Required.
	Keys *jwtsign.Keyring
	// Box seals the push authorization headers that receivers supply.
	// Required.
	Box    *secret.Box
	Logger *slog.Logger
	// Now overrides the clock of API decisions (tests).
	Now func() time.Time
	// Replica names this process in push leases.
	Replica string

	// HTTPClient pushes SETs. The default follows no redirects, uses no
	// proxy and, unless AllowPrivateTargets, refuses to connect to an
	// internal address (checked on the address it dials, after DNS). A
	// client given here is used as it is: it must do the same.
	HTTPClient *http.Client
	// AllowPrivateTargets lets push streams reach loopback, private,
	// link-local and other internal addresses, and plain http to
	// 127.0.0.1, ::1 and localhost (tests, a receiver on the same host).
	// Off by default: a receiver token could otherwise make mdmd POST to
	// internal services (SSRF). Push URLs are https otherwise.
	AllowPrivateTargets bool
	// PushConcurrency bounds the POSTs in flight per stream (default 8);
	// PushStreams the streams pushed at once (default 4).
	PushConcurrency int
	PushStreams     int
	// PushTimeout bounds one POST (default 10 s).
	PushTimeout time.Duration
	// PushLease is how long a replica holds a stream it pushes (default 2
	// min). A run sends no new SET after the claim time plus PushLease
	// less a fifth of it (for recording the outcome and clock skew) less
	// PushTimeout, so that every POST it makes ends before another
	// replica may take the stream over; the SETs it did not reach stay
	// due, in order. PushLease must exceed 1.25 × PushTimeout.
	PushLease time.Duration
	// PushBatch is how many SETs of a stream one lease covers (default
	// 200), capped so that PushBatch / PushConcurrency rounds of
	// PushTimeout fit in that sending window (64 with the defaults).
	PushBatch int
	// RetryBackoff is how long a stream waits after its n-th failed push
	// in a row (default jobs.Backoff: 2 s doubling to 30 min).
	RetryBackoff func(n int) time.Duration

	// PollAckTimeout is how long a polled SET waits for its
	// acknowledgement before a poll returns it again (default 60 s).
	PollAckTimeout time.Duration
	// PollMaxWait bounds a long poll (returnImmediately false; default 10 s).
	PollMaxWait time.Duration
	// PollMaxEvents caps the SETs one poll returns (default 500).
	PollMaxEvents int

	// MinVerificationInterval is the streams' min_verification_interval
	// (default 30 s): verification requests closer together get 429.
	MinVerificationInterval time.Duration
	// MaxStreamsPerReceiver bounds each receiver's streams (default 10).
	MaxStreamsPerReceiver int
	// MaxSubjectsPerStream bounds the subjects of a stream (its
	// exclusions, on an all-subjects stream): one more is 409 (default
	// 10,000).
	MaxSubjectsPerStream int
	// Interval is how often Run looks for new events and due SETs
	// (default 1 s).
	Interval time.Duration
	// DoneRetention is how long delivered and failed SETs are kept
	// (default 24 h); MaxAge how long an undelivered SET waits before it
	// expires (default 7 days).
	DoneRetention time.Duration
	MaxAge        time.Duration
}

// Transmitter is the SSF transmitter.
type Transmitter struct {
	st     *storage.Store
	opt    Options
	log    *slog.Logger
	issuer string
	client *http.Client
	wake   chan struct{}
	// sendWindow is how long after a claim a push run may start a POST.
	sendWindow time.Duration
}

// New returns a Transmitter.
func New(st *storage.Store, opt Options) (*Transmitter, error) {
	iss, err := url.Parse(opt.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "https" && iss.Scheme != "http") || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("ssf: issuer %q must be an absolute http(s) URL with no query or fragment", opt.Issuer)
	}
	if opt.Keys == nil || opt.Box == nil {
		return nil, fmt.Errorf("ssf: a key ring and a secret box are required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Replica == "" {
		opt.Replica = "ssf-" + randHex(4)
	}
	if opt.PushConcurrency <= 0 {
		opt.PushConcurrency = 8
	}
	if opt.PushStreams <= 0 {
		opt.PushStreams = 4
	}
	if opt.PushTimeout <= 0 {
		opt.PushTimeout = 10 * time.Second
	}
	if opt.PushLease <= 0 {
		opt.PushLease = 2 * time.Minute
	}
	// A run starts no POST after sendWindow, so the last one ends a fifth
	// of the lease before it runs out: time to record the outcome, and
	// slack for the replicas' clocks.
	sendWindow := opt.PushLease - opt.PushLease/5 - opt.PushTimeout
	if sendWindow <= 0 {
		return nil, fmt.Errorf("ssf: the push lease (%s) must exceed 1.25 × the push timeout (%s)", opt.PushLease, opt.PushTimeout)
	}
	maxBatch := opt.PushConcurrency * max(int(sendWindow/opt.PushTimeout), 1)
	if opt.PushBatch <= 0 {
		opt.PushBatch = 200
	}
	opt.PushBatch = min(opt.PushBatch, maxBatch)
	if opt.RetryBackoff == nil {
		opt.RetryBackoff = jobs.Backoff
	}
	if opt.PollAckTimeout <= 0 {
		opt.PollAckTimeout = time.Minute
	}
	if opt.PollMaxWait <= 0 {
		opt.PollMaxWait = 10 * time.Second
	}
	if opt.PollMaxEvents <= 0 {
		opt.PollMaxEvents = 500
	}
	if opt.MinVerificationInterval <= 0 {
		opt.MinVerificationInterval = 30 * time.Second
	}
	if opt.MaxStreamsPerReceiver <= 0 {
		opt.MaxStreamsPerReceiver = 10
	}
	if opt.MaxSubjectsPerStream <= 0 {
		opt.MaxSubjectsPerStream = 10000
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	if opt.DoneRetention <= 0 {
		opt.DoneRetention = 24 * time.Hour
	}
	if opt.MaxAge <= 0 {
		opt.MaxAge = 7 * 24 * time.Hour
	}
	client := opt.HTTPClient
	if client == nil {
		client = pushClient(opt.PushConcurrency*opt.PushStreams, opt.AllowPrivateTargets)
	}
	return &Transmitter{st: st, opt: opt, log: opt.Logger, issuer: strings.TrimSuffix(iss.String(), "/"), client: client,
		wake: make(chan struct{}, 1), sendWindow: sendWindow}, nil
}

// Issuer returns the transmitter's issuer.
func (t *Transmitter) Issuer() string { return t.issuer }

// Metadata is the transmitter configuration metadata (SSF §7.1).
type Metadata struct {
	SpecVersion              string                `json:"spec_version"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	StatusEndpoint           string                `json:"status_endpoint"`
	AddSubjectEndpoint       string                `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string                `json:"remove_subject_endpoint"`
	VerificationEndpoint     string                `json:"verification_endpoint"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes"`
	DefaultSubjects          string                `json:"default_subjects"`
}

// AuthorizationScheme names how receivers authenticate (SSF §7.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Metadata returns the transmitter configuration metadata.
func (t *Transmitter) Metadata() Metadata {
	api := t.issuer + apiPrefix
	return Metadata{
		SpecVersion: SpecVersion, Issuer: t.issuer, JWKSURI: t.issuer + JWKSPath,
		DeliveryMethodsSupported: []string{mdmd.SSFDeliveryPush, mdmd.SSFDeliveryPoll},
		ConfigurationEndpoint:    api + StreamsPath, StatusEndpoint: api + StatusPath,
		AddSubjectEndpoint: api + AddSubjectPath, RemoveSubjectEndpoint: api + RemoveSubjectPath,
		VerificationEndpoint: api + VerifyPath,
		// Bearer tokens (RFC 6750) that an administrator issues.
		AuthorizationSchemes: []AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6750"}},
		DefaultSubjects:      "NONE",
	}
}

func (t *Transmitter) pollURL(streamID string) string {
	return t.issuer + apiPrefix + strings.Replace(PollPath, "{stream_id}", url.PathEscape(streamID), 1)
}

// wellKnownPath is where the metadata is served: the issuer's path, if
// any, goes after the well-known name (SSF §7.2).
func (t *Transmitter) wellKnownPath() string {
	u, _ := url.Parse(t.issuer)
	return WellKnownPath + strings.TrimSuffix(u.Path, "/")
}

// RegisterPublic adds the unauthenticated routes to the root router: the
// transmitter configuration metadata at /.well-known/ssf-configuration
// and the JWKS at /ssf/jwks.json.
func (t *Transmitter) RegisterPublic(r chi.Router) {
	r.Get(t.wellKnownPath(), t.serveMetadata)
	r.Method(http.MethodGet, JWKSPath, t.opt.Keys.Handler())
}

func (t *Transmitter) serveMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, http.StatusOK, t.Metadata())
}

// Wake makes Run look for work now.
func (t *Transmitter) Wake() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run fans out new events and pushes due SETs every Interval (and when
// woken) until ctx ends. Every replica may run it.
func (t *Transmitter) Run(ctx context.Context) {
	ticker := time.NewTicker(t.opt.Interval)
	defer ticker.Stop()
	for {
		if err := t.Dispatch(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("ssf dispatch failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-t.wake:
		}
	}
}

// Dispatch fans out the new events, then pushes every due SET.
func (t *Transmitter) Dispatch(ctx context.Context) error {
	_, ferr := t.Fanout(ctx)
	_, perr := t.Push(ctx)
	if ferr != nil {
		return ferr
	}
	return perr
}

// FanoutRun is the handler of FanoutJob.
func (t *Transmitter) FanoutRun(ctx context.Context, _ *mdmd.Job) error {
	_, err := t.Fanout(ctx)
	return err
}

// PushRun is the handler of PushJob.
func (t *Transmitter) PushRun(ctx context.Context, _ *mdmd.Job) error {
	_, err := t.Push(ctx)
	return err
}

// PruneRun is the handler of PruneJob: it expires SETs undelivered past
// MaxAge and deletes finished ones past DoneRetention. Schedule it hourly.
func (t *Transmitter) PruneRun(ctx context.Context, _ *mdmd.Job) error {
	now := time.Now()
	deleted, expired, err := t.st.PruneSSFSets(ctx, now.Add(-t.opt.DoneRetention), now.Add(-t.opt.MaxAge))
	if expired > 0 {
		t.log.Warn("SETs expired undelivered", "count", expired, "max_age", t.opt.MaxAge.String())
	}
	if deleted > 0 {
		t.log.Info("pruned finished SETs", "count", deleted)
	}
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newJTI returns a fresh, unguessable SET identifier.
func newJTI() string { return randHex(16) }
