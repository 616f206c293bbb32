package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd/storage/storagetest"
)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a real mdmd server running in-process on 127.0.0.1:0.
type testServer struct {
	t      testing.TB
	srv    *Server
	URL    string
	Token  string // the bootstrap admin token, when this start created it
	Stdout *syncBuffer
	Stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
	client *http.Client
}

// useTLS switches the test client to HTTPS, trusting roots.
func (ts *testServer) useTLS(roots *x509.CertPool) {
	ts.URL = "https://" + ts.srv.Addr().String()
	ts.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

var tokenRE = regexp.MustCompile(`API token:\s+(mdmd_\S+)`)

func noEnv(string) string { return "" }

// start runs a server with the given flags (plus --listen 127.0.0.1:0) and
// waits until it is ready.
func start(t testing.TB, args ...string) *testServer {
	t.Helper()
	ts := launch(t, noEnv, args...)
	ts.waitReady()
	return ts
}

func launch(t testing.TB, getenv func(string) string, args ...string) *testServer {
	t.Helper()
	return launchWith(t, getenv, nil, args...)
}

// launchWith is launch with a hook that runs before Run (to register jobs).
func launchWith(t testing.TB, getenv func(string) string, setup func(*Server), args ...string) *testServer {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--log-level", "debug", "--shutdown-timeout", "5s"}, args...)
	cfg, err := ParseConfig("test", args, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, done: make(chan error, 1)}
	ts.srv = NewServer(cfg, ts.Stdout, ts.Stderr)
	if setup != nil {
		setup(ts.srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- ts.srv.Run(ctx) }()
	select {
	case <-ts.srv.Listening():
	case err := <-ts.done:
		t.Fatalf("server stopped before listening: %v\n%s", err, ts.Stderr)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not listen")
	}
	ts.URL = "http://" + ts.srv.Addr().String()
	t.Cleanup(func() { ts.stop() })
	return ts
}

func (ts *testServer) waitReady() {
	ts.t.Helper()
	select {
	case <-ts.srv.Ready():
	case err := <-ts.done:
		ts.done <- err
		ts.t.Fatalf("server stopped before ready: %v\n%s", err, ts.Stderr)
	case <-time.After(30 * time.Second):
		ts.t.Fatalf("server not ready after 30s\n%s", ts.Stderr)
	}
	if m := tokenRE.FindStringSubmatch(ts.Stdout.String()); m != nil {
		ts.Token = m[1]
	}
}

// stop cancels the server and returns Run's error.
func (ts *testServer) stop() error {
	ts.cancel()
	select {
	case err := <-ts.done:
		ts.done <- err
		return err
	case <-time.After(20 * time.Second):
		ts.t.Fatal("server did not stop within 20s")
		return nil
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v: %s", r.Status, err, r.Body)
	}
}

func (r response) errCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.json(t, &e)
	return e.Error.Code
}

// do sends a request with an optional bearer token and JSON body (a string
// is sent as is).
func (ts *testServer) do(method, path, token string, body any) response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			ts.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := ts.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// mustDo is do that fails the test unless the status is want.
func (ts *testServer) mustDo(want int, method, path, token string, body any) response {
	ts.t.Helper()
	r := ts.do(method, path, token, body)
	if r.Status != want {
		ts.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// backends lists the databases a test runs on, as --database-url values.
func backends(t *testing.T) []storagetest.Backend { return storagetest.Backends(t) }

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func backendsB(b *testing.B) []storagetest.Backend { return storagetest.Backends(b) }

// eachBackend runs fn as a subtest on every database.
func eachBackend(t *testing.T, fn func(t *testing.T, dbURL string)) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.URL) })
	}
}
