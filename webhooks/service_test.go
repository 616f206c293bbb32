package webhooks_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage/storagetest"
	"github.com/mdmd/mdmd/webhooks"
)

// An event appended to the log reaches the receiver once, signed, over
// plain http to 127.0.0.1 and over TLS.
func TestEndToEnd(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		for _, tls := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tls=%v", be.Name, tls), func(t *testing.T) {
				clk := newClock()
				rcv := newReceiver(t, clk, tls)
				var opt webhooks.Options
				if tls {
					opt.Client = rcv.srv.Client()
				}
				e := newEnv(t, freshURL(t, be), opt, clk, nil)
				ep, sec := e.endpoint(t, "idp", rcv.URL("/hooks/mdmd"))
				rcv.set(sec, http.StatusOK)

				data := mdmd.ThreatChangedData{EventDevice: mdmd.EventDevice{DeviceID: "dev-1", Platform: mdmd.PlatformIOS,
					SerialNumber: "SN1", OwnerUser: "ada@example.com"}, PreviousLevel: "low", CurrentLevel: "high", Source: "mtd",
					ReportedAt: clk.Now()}
				must(t, e.st.AppendEvent(ctx, mdmd.EventThreatChanged, "dev-1", data))
				e.fanout(t, 1)
				if kinds := e.jobs.kinds(); len(kinds) != 1 || kinds[0] != webhooks.DeliverJob {
					t.Fatalf("fan-out queued %v, want one delivery job", kinds)
				}
				e.deliver(t, 1)

				got := rcv.all()
				if len(got) != 1 {
					t.Fatalf("receiver got %d requests, want 1", len(got))
				}
				r := got[0]
				if r.Path != "/hooks/mdmd" || r.Type != mdmd.EventThreatChanged || r.Time != clk.Now().Format(time.RFC3339Nano) {
					t.Fatalf("request = %s type %q timestamp %q", r.Path, r.Type, r.Time)
				}
				var gotData mdmd.ThreatChangedData
				must(t, json.Unmarshal(r.Data, &gotData))
				if gotData.DeviceID != "dev-1" || gotData.OwnerUser != "ada@example.com" || gotData.CurrentLevel != "high" ||
					gotData.PreviousLevel != "low" || !gotData.ReportedAt.Equal(data.ReportedAt) {
					t.Fatalf("data = %+v", gotData)
				}
				if r.Timestamp != strconv.FormatInt(clk.Now().Unix(), 10) {
					t.Fatalf("webhook-timestamp = %s, want %d", r.Timestamp, clk.Now().Unix())
				}
				// One secret, one signature: exactly the independent HMAC.
				if r.Signature != hmacSig(sec, r.ID, r.Timestamp, r.Body) {
					t.Fatalf("webhook-signature = %q", r.Signature)
				}
				if err := webhooks.Verify(webhooks.NewSecret(), r.Header, r.Body, time.Minute, clk.Now()); err == nil {
					t.Fatal("a signature verified under another secret")
				}

				ds := e.deliveries(t, ep.ID)
				if len(ds) != 1 || ds[0].State != mdmd.WebhookDelivered || ds[0].MessageID != r.ID || ds[0].EventType != mdmd.EventThreatChanged ||
					ds[0].Attempts != 1 || ds[0].LastStatus != 200 || ds[0].DeliveredAt == nil {
					t.Fatalf("deliveries = %+v", ds)
				}
				if as := e.attempts(t, ds[0].ID); len(as) != 1 || as[0].Status != 200 || as[0].Attempt != 1 || !as[0].At.Equal(clk.Now()) {
					t.Fatalf("attempt log = %+v", as)
				}

				// Nothing is fanned out or sent twice.
				e.fanout(t, 0)
				e.deliver(t, 0)
				if n := len(rcv.all()); n != 1 {
					t.Fatalf("receiver got %d requests after a second pass", n)
				}
			})
		}
	}
}

// A receiver that answers 503, then drops the connection, then comes
// back gets every event: nothing is lost, every attempt is logged, and no
// retry comes before its backoff.
func TestReceiverDownThenBack(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			// One request at a time, so which delivery is sent first is known.
			e := newEnv(t, be.URL, webhooks.Options{Concurrency: 1}, clk, nil)
			ep, sec := e.endpoint(t, "siem", rcv.URL("/in"))
			rcv.set(sec, http.StatusServiceUnavailable)
			t0 := clk.Now()
			for i := range 3 {
				must(t, e.st.AppendEvent(ctx, mdmd.EventComplianceChanged, fmt.Sprintf("dev-%d", i),
					mdmd.ComplianceChangedData{EventDevice: mdmd.EventDevice{DeviceID: fmt.Sprintf("dev-%d", i)}, CurrentState: "noncompliant"}))
			}
			e.fanout(t, 3)

			// Down (503): the first delivery is tried; the others are not
			// sent to an endpoint that just failed, but logged and scheduled.
			e.deliver(t, 3)
			if n := len(rcv.all()); n != 1 {
				t.Fatalf("a failing receiver got %d requests in one pass, want 1", n)
			}
			checkRound := func(round int, at time.Time, base time.Duration) {
				t.Helper()
				for _, d := range e.deliveries(t, ep.ID) {
					if d.State != mdmd.WebhookPending || d.Attempts != round || d.LastError == "" {
						t.Fatalf("after round %d: %+v", round, d)
					}
					if wait := d.NextAttemptAt.Sub(at); wait < base*8/10 || wait > base*12/10 {
						t.Fatalf("after round %d the retry waits %s, want %s ±20%%", round, wait, base)
					}
					if as := e.attempts(t, d.ID); len(as) != round {
						t.Fatalf("%d attempts logged, want %d", len(as), round)
					}
				}
			}
			checkRound(1, t0, 5*time.Second)
			var statuses []int
			for _, d := range e.deliveries(t, ep.ID) {
				statuses = append(statuses, d.LastStatus)
			}
			if fmt.Sprint(statuses) != "[503 0 0]" {
				t.Fatalf("first round statuses %v, want [503 0 0]", statuses)
			}

			// Backoff: nothing is due 3 s later.
			clk.Advance(3 * time.Second)
			e.deliver(t, 0)

			// Down (connection dropped) at the second round.
			rcv.setMode(0)
			clk.Advance(4 * time.Second) // t0+7s: past 5 s + 20%
			t1 := clk.Now()
			e.deliver(t, 3)
			if n := len(rcv.all()); n != 2 {
				t.Fatalf("receiver got %d requests, want 2", n)
			}
			checkRound(2, t1, 30*time.Second)
			clk.Advance(20 * time.Second)
			e.deliver(t, 0)

			// Back: everything goes.
			rcv.setMode(http.StatusOK)
			clk.Advance(20 * time.Second) // t1+40s: past 30 s + 20%
			e.deliver(t, 3)
			ds := e.deliveries(t, ep.ID)
			got := rcv.all()
			if len(got) != 5 {
				t.Fatalf("receiver got %d requests, want 5", len(got))
			}
			okIDs, devices := map[string]bool{}, map[string]bool{}
			for _, r := range got[2:] {
				if r.Answer != http.StatusOK {
					t.Fatalf("answer %d", r.Answer)
				}
				okIDs[r.ID] = true
				var data mdmd.ComplianceChangedData
				must(t, json.Unmarshal(r.Data, &data))
				devices[data.DeviceID] = true
			}
			if len(okIDs) != 3 || len(devices) != 3 {
				t.Fatalf("delivered %d messages for %d devices, want 3 and 3", len(okIDs), len(devices))
			}
			for _, r := range got[:2] {
				if !okIDs[r.ID] {
					t.Fatalf("a retried message changed its webhook-id: %s", r.ID)
				}
			}
			for _, d := range ds {
				if d.State != mdmd.WebhookDelivered || !okIDs[d.MessageID] || d.Attempts != 3 {
					t.Fatalf("delivery = %+v", d)
				}
				as := e.attempts(t, d.ID)
				if len(as) != 3 || as[2].Status != 200 || as[0].Error == "" || as[1].Error == "" || as[1].Status != 0 {
					t.Fatalf("attempt log = %+v", as)
				}
			}
		})
	}
}

// A delivery that keeps failing is given up after MaxAttempts; an
// administrator's redelivery starts a new round with the same webhook-id.
func TestGiveUpAndRedeliver(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			e := newEnv(t, be.URL, webhooks.Options{MaxAttempts: 3}, clk, nil)
			ep, sec := e.endpoint(t, "flaky", rcv.URL("/"))
			rcv.set(sec, http.StatusInternalServerError)
			d, err := e.svc.SendTest(ctx, ep.ID)
			must(t, err)
			if d.EventType != mdmd.EventWebhookTest || d.State != mdmd.WebhookPending {
				t.Fatalf("test delivery = %+v", d)
			}
			for range 3 {
				e.deliver(t, 1)
				clk.Advance(3 * time.Hour)
			}
			e.deliver(t, 0)
			got, err := e.st.GetWebhookDelivery(ctx, d.ID)
			must(t, err)
			if got.State != mdmd.WebhookFailed || got.Attempts != 3 || got.LastStatus != 500 {
				t.Fatalf("after 3 failures: %+v", got)
			}

			rcv.setMode(http.StatusNoContent)
			_, err = e.svc.Redeliver(ctx, "other", d.ID)
			wantCode(t, err, mdmd.ENotFound)
			red, err := e.svc.Redeliver(ctx, ep.ID, d.ID)
			must(t, err)
			if red.State != mdmd.WebhookPending || red.RoundAttempts != 0 {
				t.Fatalf("redelivered = %+v", red)
			}
			e.deliver(t, 1)
			got, _ = e.st.GetWebhookDelivery(ctx, d.ID)
			if got.State != mdmd.WebhookDelivered || got.Attempts != 4 {
				t.Fatalf("after redelivery: %+v", got)
			}
			reqs := rcv.all()
			if len(reqs) != 4 {
				t.Fatalf("receiver got %d requests, want 4", len(reqs))
			}
			for _, r := range reqs {
				if r.ID != d.MessageID || r.Type != mdmd.EventWebhookTest {
					t.Fatalf("request %s of type %s, want %s of webhook.test", r.ID, r.Type, d.MessageID)
				}
			}
			var log []string
			for _, a := range e.attempts(t, d.ID) {
				log = append(log, fmt.Sprintf("%d:%d", a.Attempt, a.Status))
			}
			if strings.Join(log, ",") != "1:500,2:500,3:500,4:204" {
				t.Fatalf("attempt log = %v", log)
			}
		})
	}
}

// A receiver that answers 410 Gone is not sent anything more.
func TestGoneDisablesEndpoint(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, clk, false)
	e := newEnv(t, storagetest.SQLiteURL(t), webhooks.Options{}, clk, nil)
	ep, sec := e.endpoint(t, "retired", rcv.URL("/"))
	rcv.set(sec, http.StatusGone)
	must(t, e.st.AppendEvent(ctx, mdmd.EventThreatChanged, "d", mdmd.ThreatChangedData{CurrentLevel: "low"}))
	e.fanout(t, 1)
	e.deliver(t, 1)
	ds := e.deliveries(t, ep.ID)
	if len(ds) != 1 || ds[0].State != mdmd.WebhookFailed || ds[0].Attempts != 1 {
		t.Fatalf("deliveries = %+v", ds)
	}
	got, err := e.st.GetWebhookEndpoint(ctx, ep.ID)
	must(t, err)
	if got.Enabled || !strings.Contains(got.DisabledReason, "410") {
		t.Fatalf("endpoint = %+v, want disabled for 410", got)
	}
	must(t, e.st.AppendEvent(ctx, mdmd.EventThreatChanged, "d", mdmd.ThreatChangedData{CurrentLevel: "high"}))
	e.fanout(t, 1)
	if n := len(e.deliveries(t, ep.ID)); n != 1 {
		t.Fatalf("a disabled endpoint got %d deliveries", n)
	}
	_, err = e.svc.SendTest(ctx, ep.ID)
	wantCode(t, err, mdmd.EConflict)
	_, err = e.svc.Redeliver(ctx, ep.ID, ds[0].ID)
	wantCode(t, err, mdmd.EConflict)
	e.deliver(t, 0)
	if n := len(rcv.all()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

// When a receiver answering 410 Gone gets its endpoint disabled, the
// endpoint's other pending deliveries are held, so later claims do not
// walk them; enabled again, they go out.
func TestGoneHoldsBacklog(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			e := newEnv(t, be.URL, webhooks.Options{Batch: 1, Concurrency: 1}, clk, nil)
			ep, sec := e.endpoint(t, "gone", rcv.URL("/"))
			rcv.set(sec, http.StatusGone)
			for _, level := range []string{"low", "medium", "high"} {
				must(t, e.st.AppendEvent(ctx, mdmd.EventThreatChanged, "d", mdmd.ThreatChangedData{CurrentLevel: level}))
			}
			e.fanout(t, 3)
			e.deliver(t, 1) // 410: disabled; the next claim finds nothing due
			ds := e.deliveries(t, ep.ID)
			if len(ds) != 3 || ds[0].State != mdmd.WebhookFailed || ds[1].State != mdmd.WebhookPending || !ds[1].Held ||
				ds[2].State != mdmd.WebhookPending || !ds[2].Held {
				t.Fatalf("after 410: %+v", ds)
			}
			rcv.setMode(http.StatusNoContent)
			enable := true
			if _, err := e.st.UpdateWebhookEndpoint(ctx, ep.ID, mdmd.WebhookEndpointUpdate{Enabled: &enable}); err != nil {
				t.Fatal(err)
			}
			e.deliver(t, 2)
			for _, d := range e.deliveries(t, ep.ID)[1:] {
				if d.State != mdmd.WebhookDelivered || d.Held {
					t.Fatalf("after enabling: %+v", d)
				}
			}
			if n := len(rcv.all()); n != 3 {
				t.Fatalf("receiver got %d requests, want 3", n)
			}
		})
	}
}

// After a rotation both secrets sign for 24 hours, then only the new one;
// a rotation that does not keep the previous secret drops it at once.
func TestSecretRotation(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			e := newEnv(t, be.URL, webhooks.Options{}, clk, nil)
			ep, sec1 := e.endpoint(t, "rotating", rcv.URL("/"))
			stored, err := e.st.GetWebhookEndpoint(ctx, ep.ID)
			must(t, err)
			if !secret.IsSealed(stored.SecretSealed) || strings.Contains(string(stored.SecretSealed), strings.TrimPrefix(sec1, "whsec_")) {
				t.Fatal("the secret is stored in the clear")
			}
			// Each ping is checked against the secrets that must and must not verify it.
			ping := func(valid []string, invalid []string) {
				t.Helper()
				_, err := e.svc.SendTest(ctx, ep.ID)
				must(t, err)
				e.deliver(t, 1)
				got := rcv.all()
				r := got[len(got)-1]
				entries := strings.Fields(r.Signature)
				if len(entries) != len(valid) {
					t.Fatalf("%d signatures %q, want %d", len(entries), r.Signature, len(valid))
				}
				for _, s := range valid {
					must(t, webhooks.Verify(s, r.Header, r.Body, time.Minute, clk.Now()))
					if !slices.Contains(entries, hmacSig(s, r.ID, r.Timestamp, r.Body)) {
						t.Fatalf("no entry of %q is the independent HMAC", r.Signature)
					}
				}
				for _, s := range invalid {
					if err := webhooks.Verify(s, r.Header, r.Body, time.Minute, clk.Now()); err != webhooks.ErrSignature {
						t.Fatalf("a retired secret: Verify = %v, want ErrSignature", err)
					}
				}
			}
			ping([]string{sec1}, nil)

			rot, sec2, err := e.svc.RotateSecret(ctx, ep.ID, true)
			must(t, err)
			if sec2 == sec1 || rot.PreviousSecretUntil == nil || !rot.PreviousSecretUntil.Equal(clk.Now().Add(24*time.Hour)) {
				t.Fatalf("rotation = %+v", rot)
			}
			ping([]string{sec2, sec1}, nil)
			clk.Advance(23 * time.Hour)
			ping([]string{sec2, sec1}, nil)
			clk.Advance(2 * time.Hour)
			ping([]string{sec2}, []string{sec1})

			_, sec3, err := e.svc.RotateSecret(ctx, ep.ID, false)
			must(t, err)
			ping([]string{sec3}, []string{sec2, sec1})
			_, _, err = e.svc.RotateSecret(ctx, "missing", true)
			wantCode(t, err, mdmd.ENotFound)
		})
	}
}

// Each endpoint gets the event types it subscribes to; a disabled one
// gets nothing.
func TestEventTypeFiltering(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			e := newEnv(t, be.URL, webhooks.Options{}, clk, nil)
			all := slices.Sorted(slices.Values(mdmd.EventTypes))
			endpoints := []struct {
				name    string
				types   []string
				enabled bool
				want    []string
			}{
				{"threats", []string{mdmd.EventThreatChanged}, true, []string{mdmd.EventThreatChanged}},
				{"compliance", []string{mdmd.EventComplianceChanged, mdmd.EventComplianceAction}, true,
					[]string{mdmd.EventComplianceAction, mdmd.EventComplianceChanged}},
				{"everything", nil, true, all},
				{"disabled", nil, false, nil},
			}
			for _, ep := range endpoints {
				in := &mdmd.WebhookEndpoint{Name: ep.name, URL: rcv.URL("/" + ep.name), EventTypes: ep.types, Enabled: ep.enabled}
				_, err := e.svc.CreateEndpoint(ctx, in)
				must(t, err)
			}
			for _, typ := range mdmd.EventTypes {
				must(t, e.st.AppendEvent(ctx, typ, "dev", map[string]string{"device_id": "dev"}))
			}
			e.fanout(t, len(mdmd.EventTypes))
			e.deliver(t, 1+2+len(mdmd.EventTypes))
			byPath := map[string][]string{}
			for _, r := range rcv.all() {
				byPath[r.Path] = append(byPath[r.Path], r.Type)
			}
			for _, ep := range endpoints {
				got := slices.Sorted(slices.Values(byPath["/"+ep.name]))
				if fmt.Sprint(got) != fmt.Sprint(ep.want) {
					t.Errorf("%s got %v, want %v", ep.name, got, ep.want)
				}
			}
		})
	}
}

// Two replicas (each with its own connection pool) fanning out and
// delivering at once send every message exactly once.
func TestReplicas(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			b := newEnv(t, be.URL, webhooks.Options{Replica: "b", Batch: 5}, clk, nil)
			a := newEnv(t, be.URL, webhooks.Options{Replica: "a", Batch: 5}, clk, b.box)
			_, sec1 := b.endpoint(t, "one", rcv.URL("/one"))
			_, sec2 := b.endpoint(t, "two", rcv.URL("/two"), mdmd.EventThreatChanged)
			const events = 40
			for i := range events {
				must(t, a.st.AppendEvent(ctx, mdmd.EventTypes[i%2], fmt.Sprintf("dev-%d", i), map[string]int{"i": i}))
			}
			want := events + events/2
			var wg sync.WaitGroup
			for _, e := range []*env{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 200 {
						if _, err := e.svc.Fanout(ctx); err != nil {
							t.Error(err)
							return
						}
						if _, err := e.svc.Deliver(ctx); err != nil {
							t.Error(err)
							return
						}
						if len(rcv.all()) >= want {
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}
			wg.Wait()
			got := rcv.all()
			ids := map[string]int{}
			for _, r := range got {
				ids[r.ID]++
				sec := sec1
				if r.Path == "/two" {
					sec = sec2
				}
				if err := webhooks.Verify(sec, r.Header, r.Body, time.Minute, clk.Now()); err != nil {
					t.Fatalf("%s: %v", r.Path, err)
				}
			}
			if len(got) != want || len(ids) != want {
				t.Fatalf("receiver got %d requests with %d distinct IDs, want %d", len(got), len(ids), want)
			}
			for id, n := range ids {
				if n != 1 {
					t.Errorf("message %s sent %d times", id, n)
				}
			}
		})
	}
}

// Pruning drops finished deliveries past the retention and keeps pending ones.
func TestPrune(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, clk, false)
	e := newEnv(t, storagetest.SQLiteURL(t), webhooks.Options{Retain: 48 * time.Hour}, clk, nil)
	ep, sec := e.endpoint(t, "p", rcv.URL("/"))
	rcv.set(sec, http.StatusOK)
	_, err := e.svc.SendTest(ctx, ep.ID)
	must(t, err)
	e.deliver(t, 1)
	rcv.setMode(http.StatusBadGateway)
	_, err = e.svc.SendTest(ctx, ep.ID)
	must(t, err)
	e.deliver(t, 1)
	must(t, e.svc.RunPrune(ctx, nil))
	if n := len(e.deliveries(t, ep.ID)); n != 2 {
		t.Fatalf("pruned recent deliveries: %d left", n)
	}
	clk.Advance(49 * time.Hour)
	must(t, e.svc.RunPrune(ctx, nil))
	ds := e.deliveries(t, ep.ID)
	if len(ds) != 1 || ds[0].State != mdmd.WebhookPending {
		t.Fatalf("after pruning: %+v, want the pending delivery only", ds)
	}
}

// Answers other than 2xx are retried, each logged with what happened:
// a redirect is not followed, Retry-After is honoured, a receiver that
// does not answer in time is given up on for this attempt.
func TestAnswersThatAreNotSuccess(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storagetest.SQLiteURL(t), webhooks.Options{Timeout: 300 * time.Millisecond}, clk, nil)
	var mu sync.Mutex
	elsewhere := 0
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere++
		mu.Unlock()
	}))
	defer target.Close()
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		status    int
		errPart   string
		minWait   time.Duration
		maxWait   time.Duration
		redirects bool
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
		}, 307, "redirects are not followed", 4 * time.Second, 6 * time.Second, true},
		{"rate limited with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		}, 429, "429 Too Many Requests", 120 * time.Second, 120 * time.Second, false},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // so the server notices the client hanging up
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, 0, "no answer within 300ms", 4 * time.Second, 6 * time.Second, false},
		{"bad request", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
		}, 400, "400 Bad Request", 4 * time.Second, 6 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			ep, _ := e.endpoint(t, strings.ReplaceAll(tc.name, " ", "-"), srv.URL+"/hook")
			d, err := e.svc.SendTest(ctx, ep.ID)
			must(t, err)
			at := clk.Now()
			e.deliver(t, 1)
			got, err := e.st.GetWebhookDelivery(ctx, d.ID)
			must(t, err)
			wait := got.NextAttemptAt.Sub(at)
			if got.State != mdmd.WebhookPending || got.LastStatus != tc.status || !strings.Contains(got.LastError, tc.errPart) ||
				wait < tc.minWait || wait > tc.maxWait {
				t.Fatalf("after the attempt: state %s status %d error %q retry in %s", got.State, got.LastStatus, got.LastError, wait)
			}
			if as := e.attempts(t, d.ID); len(as) != 1 || as[0].Status != tc.status || as[0].Error != got.LastError {
				t.Fatalf("attempt log = %+v", as)
			}
			mu.Lock()
			defer mu.Unlock()
			if elsewhere != 0 {
				t.Fatal("a redirect was followed")
			}
			must(t, e.st.DeleteWebhookEndpoint(ctx, ep.ID))
		})
	}
}
