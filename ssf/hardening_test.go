package ssf_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// callBody is call, returning the raw answer.
func (e *env) callBody(token, method, url string, body any) (int, string) {
	e.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, e.srv.URL+url, strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// exec runs a statement on the test database (? placeholders).
func (e *env) exec(q string, args ...any) {
	e.t.Helper()
	if e.st.DialectName() == migrations.Postgres {
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	if _, err := e.st.DB().ExecContext(ctx, q, args...); err != nil {
		e.t.Fatal(err)
	}
}

// claimsOf reads a SET's claims without checking it (the tests that
// check signatures are in ssf_test.go).
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// slowReceiver takes a while over each SET, and records what it was
// sent, whether a SET came twice, and when each accepted POST began and
// ended.
type slowReceiver struct {
	t     *testing.T
	delay time.Duration

	mu    sync.Mutex
	seen  map[string]int
	got   []map[string]any
	spans [][2]time.Time
	srv   *httptest.Server
}

func newSlowReceiver(t *testing.T, delay time.Duration) *slowReceiver {
	rx := &slowReceiver{t: t, delay: delay, seen: map[string]int{}}
	rx.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, _ := io.ReadAll(r.Body)
		c := claimsOf(t, string(body))
		select {
		case <-time.After(rx.delay):
		case <-r.Context().Done(): // the sender gave up: not received
			return
		}
		rx.mu.Lock()
		rx.seen[c["jti"].(string)]++
		rx.got = append(rx.got, c)
		rx.spans = append(rx.spans, [2]time.Time{start, time.Now()})
		rx.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rx.srv.Close)
	return rx
}

func (rx *slowReceiver) count() int {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return len(rx.got)
}

// Two replicas push one stream whose SETs take longer to send than the
// push lease lasts. A run stops starting POSTs before its lease ends, so
// the other replica never takes the stream over while SETs are in flight:
// every SET arrives once, in order, one at a time.
func TestPushStopsBeforeLeaseEnds(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, func(o *ssf.Options) {
				o.PushLease, o.PushTimeout, o.PushConcurrency = 1500*time.Millisecond, 300*time.Millisecond, 8
			})
			opt := e.opt
			opt.Replica = "second"
			second, err := ssf.New(e.st, opt)
			if err != nil {
				t.Fatal(err)
			}
			rx := newSlowReceiver(t, 60*time.Millisecond)
			tok := e.token(mdmd.RoleSSFReceiver)
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{"mdmd_default_subjects": "ALL",
				"delivery": map[string]any{"method": methodPush, "endpoint_url": rx.srv.URL}}, nil); code != 201 {
				t.Fatalf("create: %d", code)
			}
			// 36 changes of one device: its SETs go one after the other,
			// 2.2 s in all, well past the 1.5 s lease.
			d := e.device("slow", "")
			const n = 36
			for i := range n {
				e.compliance(d, []string{"compliant", "noncompliant"}[i%2], "")
			}
			if _, err := e.tr.Fanout(ctx); err != nil {
				t.Fatal(err)
			}
			stop := time.Now().Add(20 * time.Second)
			var wg sync.WaitGroup
			for i, tr := range []*ssf.Transmitter{e.tr, second} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(i) * 50 * time.Millisecond)
					for rx.count() < n && time.Now().Before(stop) {
						if _, err := tr.Push(ctx); err != nil {
							t.Error(err)
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
			wg.Wait()
			rx.mu.Lock()
			defer rx.mu.Unlock()
			for jti, c := range rx.seen {
				if c > 1 {
					t.Errorf("SET %s arrived %d times", jti, c)
				}
			}
			// One device's SETs go one at a time: two that overlap were sent
			// by two replicas at once.
			slices.SortFunc(rx.spans, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
			for i := 1; i < len(rx.spans); i++ {
				if rx.spans[i][0].Before(rx.spans[i-1][1]) {
					t.Errorf("POST %d began before POST %d ended: two replicas pushed the stream at once", i, i-1)
				}
			}
			if len(rx.seen) != n {
				t.Fatalf("%d distinct SETs arrived, want %d", len(rx.seen), n)
			}
			prev := "not-compliant"
			for i, c := range rx.got {
				ev := c["events"].(map[string]any)[caepCompliance].(map[string]any)
				if ev["previous_status"] != prev {
					t.Fatalf("SET %d out of order: %v", i, ev)
				}
				prev = ev["current_status"].(string)
			}
		})
	}
}

// The push lease must leave room for a POST's timeout; the batch is cut
// to what fits in the lease.
func TestPushLeaseOptions(t *testing.T) {
	e := newEnv(t, storagetest.SQLiteURL(t), nil)
	opt := e.opt
	opt.PushLease, opt.PushTimeout = 10*time.Second, 9*time.Second
	if _, err := ssf.New(e.st, opt); err == nil {
		t.Fatal("a lease hardly longer than the push timeout was accepted")
	}
}

// An administrator's pause or disable cannot be undone by the receiver;
// the administrator can undo it.
func TestAdminStatusHold(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, nil)
			tok := e.token(mdmd.RoleSSFReceiver)
			var cfg map[string]any
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{}, &cfg); code != 201 {
				t.Fatalf("create: %d", code)
			}
			id := cfg["stream_id"].(string)
			status := func(token, want string) {
				t.Helper()
				var st map[string]string
				if code := e.call(token, "GET", "/api/v1/ssf/status?stream_id="+id, nil, &st); code != 200 || st["status"] != want {
					t.Fatalf("status = %d %v, want %s", code, st, want)
				}
			}
			// The receiver's own pause it may undo.
			for _, s := range []string{"paused", "enabled", "disabled", "enabled"} {
				if code := e.call(tok, "POST", "/api/v1/ssf/status", map[string]string{"stream_id": id, "status": s}, nil); code != 200 {
					t.Fatalf("receiver sets %s: %d", s, code)
				}
			}
			adminStatus := "/api/v1/ssf/admin/streams/" + id + "/status"
			for _, held := range []string{"paused", "disabled"} {
				var adm mdmd.SSFStream
				if code := e.call(e.admin, "POST", adminStatus, map[string]string{"status": held, "reason": "incident 42"}, &adm); code != 200 ||
					adm.Status != held || adm.StatusBy != mdmd.SSFStatusByAdmin {
					t.Fatalf("admin sets %s: %d %+v", held, code, adm)
				}
				for _, try := range []string{"enabled", "paused", "disabled"} {
					code, body := e.callBody(tok, "POST", "/api/v1/ssf/status", map[string]string{"stream_id": id, "status": try})
					if code != 403 || !strings.Contains(body, "administrator") || !strings.Contains(body, "incident 42") {
						t.Fatalf("receiver sets %s on a stream an administrator %s: %d %s", try, held, code, body)
					}
				}
				status(tok, held)
			}
			// The administrator enables it again, and the receiver has its
			// status back.
			if code := e.call(e.admin, "POST", adminStatus, map[string]string{"status": "enabled"}, nil); code != 200 {
				t.Fatalf("admin enables: %d", code)
			}
			if code := e.call(tok, "POST", "/api/v1/ssf/status", map[string]string{"stream_id": id, "status": "paused"}, nil); code != 200 {
				t.Fatalf("receiver pauses after the administrator enabled: %d", code)
			}
			status(tok, "paused")
		})
	}
}

// A stream's aud is its receiver's: the token's audience if an
// administrator set one, else urn:mdmd:ssf:receiver:<token id>. A
// receiver cannot pick another, so it cannot get SETs signed for someone
// else's audience.
func TestStreamAudience(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, nil)
			tok, id := e.tokenID(mdmd.RoleSSFReceiver)
			own := "urn:mdmd:ssf:receiver:" + id
			for _, aud := range []any{"https://idp.example.com", "urn:mdmd:ssf:receiver:someone-else", []string{own, "https://idp.example.com"}} {
				code, body := e.callBody(tok, "POST", "/api/v1/ssf/streams", map[string]any{"aud": aud})
				if code != 400 || !strings.Contains(body, "aud") {
					t.Fatalf("create with aud %v: %d %s", aud, code, body)
				}
			}
			for _, req := range []map[string]any{{}, {"aud": own}, {"aud": []string{own}}} {
				var cfg map[string]any
				if code := e.call(tok, "POST", "/api/v1/ssf/streams", req, &cfg); code != 201 || cfg["aud"] != own {
					t.Fatalf("create with %v: %d aud %v, want %s", req, code, cfg["aud"], own)
				}
			}

			// A token an administrator gave an audience.
			tok2, id2 := e.tokenID(mdmd.RoleSSFReceiver)
			const idp = "https://idp.example.com"
			e.exec("UPDATE api_tokens SET audience = ? WHERE id = ?", idp, id2)
			var cfg map[string]any
			if code := e.call(tok2, "POST", "/api/v1/ssf/streams", map[string]any{"mdmd_default_subjects": "ALL"}, &cfg); code != 201 || cfg["aud"] != idp {
				t.Fatalf("create by a token with an audience: %d aud %v, want %s", code, cfg["aud"], idp)
			}
			if code, body := e.callBody(tok2, "POST", "/api/v1/ssf/streams", map[string]any{"aud": "urn:mdmd:ssf:receiver:" + id2}); code != 400 {
				t.Fatalf("create by a token with an audience, naming another: %d %s", code, body)
			}
			if code := e.call(tok2, "POST", "/api/v1/ssf/streams", map[string]any{"aud": idp}, nil); code != 201 {
				t.Fatalf("create naming the token's own audience: %d", code)
			}
			// Its SETs are addressed to that audience.
			e.compliance(e.device("aud", ""), "compliant", "")
			if _, err := e.tr.Fanout(ctx); err != nil {
				t.Fatal(err)
			}
			sets, _ := e.st.ListSSFSets(ctx, cfg["stream_id"].(string), 10)
			if len(sets) != 1 {
				t.Fatalf("%d SETs queued", len(sets))
			}
			var claims map[string]any
			if err := json.Unmarshal(sets[0].Claims, &claims); err != nil || claims["aud"] != idp {
				t.Fatalf("SET aud = %v (%v)", claims["aud"], err)
			}
		})
	}
}

// Without AllowPrivateTargets a push stream cannot point at internal
// addresses, named outright or reached through DNS.
func TestPushTargets(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, func(o *ssf.Options) { o.AllowPrivateTargets = false; o.MaxStreamsPerReceiver = 100 })
			tok := e.token(mdmd.RoleSSFReceiver)
			create := func(endpoint string) (int, string) {
				return e.callBody(tok, "POST", "/api/v1/ssf/streams", map[string]any{
					"delivery": map[string]any{"method": methodPush, "endpoint_url": endpoint}})
			}
			for _, bad := range []string{
				"https://127.0.0.1/x", "https://127.9.9.9:8443/", "https://10.1.2.3/", "https://172.16.0.1/", "https://192.168.1.1/",
				"https://169.254.169.254/latest/meta-data/", "https://[::1]/", "https://[fe80::1]/", "https://[fd00::1]/",
				"https://[::ffff:127.0.0.1]/", "https://[::ffff:10.0.0.1]/", "https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/",
				"https://100.64.0.1/", "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://255.255.255.255/",
				"https://localhost/", "https://LOCALHOST./", "https://svc.localhost/", "https://127.1/", "https://2130706433/",
				"https://0x7f.1/", "https://0177.0.0.1/", "http://receiver.example.com/events", "http://127.0.0.1/", "http://localhost/",
			} {
				if code, body := create(bad); code != 400 || !strings.Contains(body, "endpoint_url") {
					t.Errorf("push to %s: %d %s, want 400", bad, code, body)
				}
			}
			var cfg map[string]any
			for _, good := range []string{"https://receiver.example.com/events", "https://203.0.113.10/ssf", "https://[2001:db8::1]/ssf"} {
				if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{
					"delivery": map[string]any{"method": methodPush, "endpoint_url": good}}, &cfg); code != 201 {
					t.Errorf("push to %s: %d, want 201", good, code)
				}
			}
			if code, _ := e.callBody(tok, "PATCH", "/api/v1/ssf/streams", map[string]any{"stream_id": cfg["stream_id"],
				"delivery": map[string]any{"method": methodPush, "endpoint_url": "https://10.0.0.7/"}}); code != 400 {
				t.Errorf("PATCH to a private address: %d", code)
			}

			// Checked again where it counts: on the address dialled, after
			// name resolution. This stream was stored without the API's
			// check (as by an older mdmd); a name that resolves inside meets
			// the same check. (No name is resolved here: tests stay off DNS.)
			hits := 0
			var mu sync.Mutex
			inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				hits++
				mu.Unlock()
				w.WriteHeader(http.StatusAccepted)
			}))
			defer inside.Close()
			var ids []string
			for _, u := range []string{inside.URL + "/events"} {
				st := &mdmd.SSFStream{OwnerID: "rx", Aud: mdmd.RawJSON(`"rx"`), DeliveryMethod: methodPush, EndpointURL: u,
					EventsDelivered: mdmd.RawJSON(`[]`), SubjectFormat: "complex"}
				if err := e.st.CreateSSFStream(ctx, st, 0); err != nil {
					t.Fatal(err)
				}
				if err := e.st.EnqueueSSFSets(ctx, []mdmd.SSFSet{{JTI: "dial-" + st.ID, StreamID: st.ID, EventType: caepCompliance,
					SubjectKey: "d", Claims: mdmd.RawJSON(`{"jti":"x"}`)}}); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, st.ID)
			}
			if _, err := e.tr.Push(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if hits != 0 {
				t.Fatalf("the push client reached a loopback receiver %d times", hits)
			}
			for _, id := range ids {
				st, _ := e.st.GetSSFStream(ctx, "", id)
				if !strings.Contains(st.PushLastError, "refusing to connect") || st.PushFailures != 1 {
					t.Fatalf("stream to %s: failures %d, last error %q", st.EndpointURL, st.PushFailures, st.PushLastError)
				}
			}
		})
	}
	// With private targets allowed (tests, a receiver on the same host),
	// plain http goes to loopback only.
	e := newEnv(t, storagetest.SQLiteURL(t), func(o *ssf.Options) { o.MaxStreamsPerReceiver = 100 })
	tok := e.token(mdmd.RoleSSFReceiver)
	for endpoint, want := range map[string]int{"http://127.0.0.1:1/x": 201, "http://[::1]:1/x": 201, "http://localhost:1/x": 201,
		"https://10.0.0.1/x": 201, "http://10.0.0.1/x": 400, "http://receiver.example.com/x": 400} {
		if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{
			"delivery": map[string]any{"method": methodPush, "endpoint_url": endpoint}}, nil); code != want {
			t.Errorf("allowed private targets: push to %s: %d, want %d", endpoint, code, want)
		}
	}
}

// The streams of a revoked receiver token take no new events, and what
// they held is not pushed; the token cannot poll.
func TestRevokedReceiver(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, nil)
			tok, id := e.tokenID(mdmd.RoleSSFReceiver)
			rx := newSlowReceiver(t, 0)
			var push, poll map[string]any
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{"mdmd_default_subjects": "ALL",
				"delivery": map[string]any{"method": methodPush, "endpoint_url": rx.srv.URL}}, &push); code != 201 {
				t.Fatalf("create push: %d", code)
			}
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{"mdmd_default_subjects": "ALL"}, &poll); code != 201 {
				t.Fatalf("create poll: %d", code)
			}
			d := e.device("revoked", "")
			e.compliance(d, "compliant", "")
			e.dispatch()
			if rx.count() != 1 {
				t.Fatalf("a live receiver got %d SETs", rx.count())
			}
			// Queued, not yet pushed, when the token is revoked.
			e.compliance(d, "noncompliant", "")
			if _, err := e.tr.Fanout(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := e.st.RevokeAPIToken(ctx, id); err != nil {
				t.Fatal(err)
			}
			e.dispatch()
			if rx.count() != 1 {
				t.Fatalf("a revoked receiver was pushed %d SETs", rx.count()-1)
			}
			e.compliance(d, "compliant", "")
			e.dispatch()
			for _, st := range []map[string]any{push, poll} {
				counts, _ := e.st.CountSSFSets(ctx, st["stream_id"].(string))
				total := int64(0)
				for _, n := range counts {
					total += n
				}
				if total != 2 {
					t.Fatalf("stream %s of a revoked receiver: %v, want the 2 SETs queued before the revocation", st["stream_id"], counts)
				}
			}
			if code := e.call(tok, "POST", "/api/v1/ssf/poll/"+poll["stream_id"].(string), map[string]any{"returnImmediately": true}, nil); code != 401 {
				t.Fatalf("poll with a revoked token: %d", code)
			}
		})
	}
}

func TestSubjectLimit(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.URL, func(o *ssf.Options) { o.MaxSubjectsPerStream = 3 })
			tok := e.token(mdmd.RoleSSFReceiver)
			var cfg map[string]any
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{}, &cfg); code != 201 {
				t.Fatalf("create: %d", code)
			}
			subject := func(path, dev string) (int, string) {
				return e.callBody(tok, "POST", path, map[string]any{"stream_id": cfg["stream_id"],
					"subject": map[string]string{"format": "opaque", "id": dev}})
			}
			for _, dev := range []string{"d1", "d2", "d3", "d2"} {
				if code, body := subject("/api/v1/ssf/subjects/add", dev); code != 200 {
					t.Fatalf("add %s: %d %s", dev, code, body)
				}
			}
			if code, body := subject("/api/v1/ssf/subjects/add", "d4"); code != 409 || !strings.Contains(body, "3 subjects") {
				t.Fatalf("add a 4th subject: %d %s, want 409", code, body)
			}
			if code, _ := subject("/api/v1/ssf/subjects/remove", "d1"); code != 204 {
				t.Fatalf("remove: %d", code)
			}
			if code, _ := subject("/api/v1/ssf/subjects/add", "d4"); code != 200 {
				t.Fatalf("add after a remove: %d", code)
			}
		})
	}
}

// recordingHandler keeps the messages logged.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) count(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// A poll's setErrs are bounded: 1,000 processed, messages cut short, one
// log line for the lot.
func TestPollSetErrsBounded(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			logs := &recordingHandler{}
			e := newEnv(t, be.URL, func(o *ssf.Options) { o.Logger = slog.New(logs) })
			tok := e.token(mdmd.RoleSSFReceiver)
			var cfg map[string]any
			if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{}, &cfg); code != 201 {
				t.Fatalf("create: %d", code)
			}
			id := cfg["stream_id"].(string)
			const n = 1200
			sets := make([]mdmd.SSFSet, n)
			for i := range sets {
				sets[i] = mdmd.SSFSet{JTI: fmt.Sprintf("jti-%04d", i), StreamID: id, EventType: caepCompliance, SubjectKey: "d",
					Claims: mdmd.RawJSON(`{}`)}
			}
			if err := e.st.EnqueueSSFSets(ctx, sets); err != nil {
				t.Fatal(err)
			}
			if out, _, err := e.st.PollSSFSets(ctx, id, nil, nil, n, time.Hour); err != nil || len(out) != n {
				t.Fatalf("handed out %d (%v)", len(out), err)
			}
			setErrs := map[string]any{"not-ours-" + strings.Repeat("x", 200): map[string]string{"err": "invalid_request"}}
			code, desc := strings.Repeat("c", 100), strings.Repeat("d", 300)+strings.Repeat("é", 300)
			for _, s := range sets {
				setErrs[s.JTI] = map[string]string{"err": code, "description": desc}
			}
			if status := e.call(tok, "POST", "/api/v1/ssf/poll/"+id, map[string]any{"setErrs": setErrs, "maxEvents": 0}, nil); status != 200 {
				t.Fatalf("poll: %d", status)
			}
			counts, _ := e.st.CountSSFSets(ctx, id)
			if counts[mdmd.SETFailed] != 1000 || counts[mdmd.SETOutstanding] != n-1000 {
				t.Fatalf("counts = %v, want 1000 failed and the rest still outstanding", counts)
			}
			got, _ := e.st.ListSSFSets(ctx, id, 1)
			if want := strings.Repeat("c", 64) + ": " + strings.Repeat("d", 256); got[0].LastError != want {
				t.Fatalf("last_error = %q (%d bytes), want the code cut at 64 and the description at 256", got[0].LastError, len(got[0].LastError))
			}
			if lines := logs.count("bad SET"); lines != 1 {
				t.Fatalf("%d log lines for one poll's setErrs, want 1", lines)
			}
		})
	}
}
