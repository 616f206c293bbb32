package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdmd/mdmd"
)

func TestStatusForCode(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{mdmd.EInvalid, 400}, {mdmd.EUnauthenticated, 401}, {mdmd.EForbidden, 403}, {mdmd.ENotFound, 404},
		{mdmd.EConflict, 409}, {mdmd.ELeaseLost, 409}, {mdmd.ETooLarge, 413}, {mdmd.EUnsupported, 415},
		{mdmd.ERateLimited, 429}, {mdmd.EInternal, 500}, {mdmd.EUnavailable, 503}, {"something-new", 500},
	}
	for _, tc := range tests {
		if got := statusForCode(tc.code); got != tc.want {
			t.Errorf("statusForCode(%q) = %d, want %d", tc.code, got, tc.want)
		}
	}
}

func newTestRoot(t *testing.T, logs io.Writer, h http.Handler) *httptest.Server {
	t.Helper()
	root := NewRoot(RootOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registry: prometheus.NewRegistry(), MaxBodyBytes: 1024})
	root.SetReady(h, func(context.Context) error { return nil })
	srv := httptest.NewServer(root)
	t.Cleanup(srv.Close)
	return srv
}

func TestPanicIsRecoveredAndLogged(t *testing.T) {
	var logs bytes.Buffer
	srv := newTestRoot(t, &logs, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("handler bug")
		}
		w.WriteHeader(204)
	}))
	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	var body ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 500 || body.Error.Code != mdmd.EInternal || strings.Contains(body.Error.Message, "handler bug") {
		t.Fatalf("panic answer = %d %+v", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), `"panic":"handler bug"`) || !strings.Contains(logs.String(), body.Error.RequestID) {
		t.Fatalf("panic not logged with its request ID:\n%s", logs.String())
	}
	// The server still serves.
	resp, err = http.Get(srv.URL + "/fine")
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("after panic: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestBodyLimit(t *testing.T) {
	var got []byte
	var readErr error
	srv := newTestRoot(t, io.Discard, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := decodeJSON(r, &v); err != nil {
			readErr = err
			WriteError(w, r, slog.New(slog.DiscardHandler), err)
			return
		}
		got, _ = json.Marshal(v)
	}))
	big := `{"a":"` + strings.Repeat("x", 2000) + `"}`
	// Declared length over the limit: refused before the handler runs.
	resp, _ := http.Post(srv.URL+"/x", "application/json", strings.NewReader(big))
	resp.Body.Close()
	if resp.StatusCode != 413 || readErr != nil {
		t.Fatalf("declared oversized body = %d (handler err %v)", resp.StatusCode, readErr)
	}
	// Chunked, no declared length: cut off while reading.
	req, _ := http.NewRequest("POST", srv.URL+"/x", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || !mdmd.IsCode(readErr, mdmd.ETooLarge) {
		t.Fatalf("chunked oversized body = %d, %v", resp.StatusCode, readErr)
	}
	resp, _ = http.Post(srv.URL+"/x", "application/json", strings.NewReader(`{"a":1}`))
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != `{"a":1}` {
		t.Fatalf("small body = %d %s", resp.StatusCode, got)
	}
}

func TestNotReadyAnswers503(t *testing.T) {
	root := NewRoot(RootOptions{Registry: prometheus.NewRegistry()})
	srv := httptest.NewServer(root)
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/api/v1/devices": 503, "/metrics": 200} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
		if want == 503 && resp.Header.Get("Retry-After") == "" && path != "/readyz" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
}
