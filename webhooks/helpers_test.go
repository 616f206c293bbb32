package webhooks_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
	"github.com/mdmd/mdmd/webhooks"
)

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := mdmd.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// clock is the one clock of a test: the store's and the service's.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeJobs records the jobs the service queues.
type fakeJobs struct {
	mu   sync.Mutex
	jobs []mdmd.Job
}

func (f *fakeJobs) Enqueue(_ context.Context, j *mdmd.Job) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, *j)
	return true, nil
}

func (f *fakeJobs) kinds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, j := range f.jobs {
		out = append(out, j.Kind)
	}
	return out
}

type env struct {
	st    *storage.Store
	svc   *webhooks.Service
	clock *clock
	box   *secret.Box
	jobs  *fakeJobs
}

func testBox(t *testing.T) *secret.Box {
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.New(key)
	must(t, err)
	return box
}

// newEnv opens a store at dbURL and a service on it, both on clk. box
// may be nil for a new key.
func newEnv(t *testing.T, dbURL string, opt webhooks.Options, clk *clock, box *secret.Box) *env {
	t.Helper()
	if box == nil {
		box = testBox(t)
	}
	e := &env{clock: clk, box: box, jobs: &fakeJobs{}}
	e.st = storagetest.Open(t, dbURL, storage.Options{Now: clk.Now})
	opt.Now = clk.Now
	if opt.Jobs == nil {
		opt.Jobs = e.jobs
	}
	e.svc = webhooks.New(e.st, e.box, opt)
	return e
}

// freshURL returns a new, empty database of the backend.
func freshURL(t *testing.T, be storagetest.Backend) string {
	if be.Name == "postgres" {
		return storagetest.PostgresURL(t)
	}
	return storagetest.SQLiteURL(t)
}

// endpoint creates an endpoint through the service and returns it with its secret.
func (e *env) endpoint(t *testing.T, name, url string, types ...string) (*mdmd.WebhookEndpoint, string) {
	t.Helper()
	ep := &mdmd.WebhookEndpoint{Name: name, URL: url, EventTypes: types, Enabled: true}
	sec, err := e.svc.CreateEndpoint(ctx, ep)
	must(t, err)
	return ep, sec
}

// deliver runs one delivery pass and checks how many attempts it recorded.
func (e *env) deliver(t *testing.T, want int) {
	t.Helper()
	n, err := e.svc.Deliver(ctx)
	must(t, err)
	if n != want {
		t.Fatalf("Deliver recorded %d attempts, want %d", n, want)
	}
}

func (e *env) fanout(t *testing.T, want int) {
	t.Helper()
	n, err := e.svc.Fanout(ctx)
	must(t, err)
	if n != want {
		t.Fatalf("Fanout read %d events, want %d", n, want)
	}
}

func (e *env) deliveries(t *testing.T, endpointID string) []mdmd.WebhookDelivery {
	t.Helper()
	ds, _, err := e.st.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{EndpointID: endpointID, Limit: mdmd.MaxPageSize})
	must(t, err)
	slices.Reverse(ds) // oldest first
	return ds
}

func (e *env) attempts(t *testing.T, deliveryID string) []mdmd.WebhookAttempt {
	t.Helper()
	as, err := e.st.ListWebhookAttempts(ctx, []string{deliveryID})
	must(t, err)
	return as
}

// received is one request a receiver got.
type received struct {
	Path      string
	ID        string
	Timestamp string
	Signature string
	Header    http.Header
	Body      []byte
	Answer    int // 0: the connection was dropped
	Type      string
	Data      json.RawMessage
	Time      string
}

// receiver is a webhook receiver on 127.0.0.1. It answers as its mode
// says, records every request and, once given the secret, checks each
// signature both with Verify and with an independent HMAC.
type receiver struct {
	srv   *httptest.Server
	clock *clock

	mu       sync.Mutex
	secret   string
	mode     int // an HTTP status, or 0 to drop the connection
	got      []received
	problems []string
}

func newReceiver(t *testing.T, clk *clock, tls bool) *receiver {
	r := &receiver{clock: clk, mode: http.StatusOK}
	if tls {
		r.srv = httptest.NewTLSServer(r)
	} else {
		r.srv = httptest.NewServer(r)
	}
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Errorf("receiver: %s", p)
		}
	})
	return r
}

func (r *receiver) URL(path string) string { return r.srv.URL + path }

func (r *receiver) set(secret string, mode int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret, r.mode = secret, mode
}

func (r *receiver) setMode(mode int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rec := received{Path: req.URL.Path, ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
		Signature: req.Header.Get("webhook-signature"), Header: req.Header.Clone(), Body: body}
	var p struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	var problems []string
	if err := json.Unmarshal(body, &p); err != nil {
		problems = append(problems, "body is not JSON: "+string(body))
	}
	rec.Type, rec.Data, rec.Time = p.Type, p.Data, p.Timestamp
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		problems = append(problems, "not a JSON POST: "+req.Method+" "+req.Header.Get("Content-Type"))
	}
	r.mu.Lock()
	sec, mode := r.secret, r.mode
	r.mu.Unlock()
	if sec != "" {
		if err := webhooks.Verify(sec, req.Header, body, time.Minute, r.clock.Now()); err != nil {
			problems = append(problems, "Verify: "+err.Error())
		}
		if !slices.Contains(strings.Fields(rec.Signature), hmacSig(sec, rec.ID, rec.Timestamp, body)) {
			problems = append(problems, "no signature matches the independent HMAC: "+rec.Signature)
		}
	}
	rec.Answer = mode
	r.mu.Lock()
	r.got = append(r.got, rec)
	r.problems = append(r.problems, problems...)
	r.mu.Unlock()
	if mode == 0 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(mode)
}
