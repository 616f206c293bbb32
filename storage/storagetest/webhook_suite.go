package storagetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
	"github.com/mdmd/mdmd/storage"
)

func webhookTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"WebhookEndpoints", testWebhookEndpoints},
		{"WebhookEndpointValidation", testWebhookEndpointValidation},
		{"WebhookFanoutConcurrent", testWebhookFanoutConcurrent},
		{"WebhookClaimConcurrent", testWebhookClaimConcurrent},
		{"WebhookLeases", testWebhookLeases},
		{"WebhookRetriesAndLog", testWebhookRetriesAndLog},
		{"WebhookPrune", testWebhookPrune},
		{"WebhookHeldWhileDisabled", testWebhookHeldWhileDisabled},
		{"WebhookHoldRace", testWebhookHoldRace},
	}
}

func newWebhookEndpoint(t *testing.T, s *storage.Store, name string, types ...string) *mdmd.WebhookEndpoint {
	t.Helper()
	e := &mdmd.WebhookEndpoint{Name: name, URL: "https://" + name + ".example.com/hook", EventTypes: types,
		Enabled: true, SecretSealed: []byte("sealed:" + name)}
	must(t, s.CreateWebhookEndpoint(ctx, e))
	return e
}

func testPing(endpointID string) mdmd.WebhookDelivery {
	return mdmd.WebhookDelivery{EndpointID: endpointID, EventType: mdmd.EventWebhookTest, Payload: mdmd.RawJSON(`{"type":"webhook.test"}`)}
}

func createDeliveries(t *testing.T, s *storage.Store, ds ...mdmd.WebhookDelivery) []mdmd.WebhookDelivery {
	t.Helper()
	n, err := s.CreateWebhookDeliveries(ctx, ds)
	must(t, err)
	if int(n) != len(ds) {
		t.Fatalf("created %d deliveries, want %d", n, len(ds))
	}
	return ds
}

func testWebhookEndpoints(t *testing.T, s *storage.Store) {
	e := newWebhookEndpoint(t, s, "okta", mdmd.EventThreatChanged, mdmd.EventComplianceChanged, mdmd.EventThreatChanged)
	if e.ID == "" || e.CreatedAt.IsZero() || !e.Enabled {
		t.Fatalf("CreateWebhookEndpoint did not fill the endpoint: %+v", e)
	}
	got, err := s.GetWebhookEndpoint(ctx, e.ID)
	must(t, err)
	if got.Name != "okta" || got.URL != e.URL || !got.Enabled || !bytes.Equal(got.SecretSealed, []byte("sealed:okta")) ||
		strings.Join(got.EventTypes, ",") != "compliance.changed,threat.changed" || !got.CreatedAt.Equal(e.CreatedAt) {
		t.Fatalf("GetWebhookEndpoint = %+v (types sorted and de-duplicated expected)", got)
	}
	if !got.Wants(mdmd.EventThreatChanged) || got.Wants(mdmd.EventComplianceAction) {
		t.Fatalf("Wants does not follow the event types %v", got.EventTypes)
	}
	// The sealed secrets never reach JSON.
	raw, _ := json.Marshal(got)
	var keys map[string]any
	must(t, json.Unmarshal(raw, &keys))
	for k := range keys {
		if strings.Contains(k, "secret") && k != "previous_secret_expires_at" {
			t.Fatalf("endpoint JSON has %q: %s", k, raw)
		}
	}
	wantCode(t, s.CreateWebhookEndpoint(ctx, &mdmd.WebhookEndpoint{Name: "okta", URL: "https://other.example.com",
		SecretSealed: []byte("x")}), mdmd.EConflict)

	all := newWebhookEndpoint(t, s, "a-siem")
	all2, _ := s.GetWebhookEndpoint(ctx, all.ID)
	if all2.EventTypes == nil || len(all2.EventTypes) != 0 || !all2.Wants(mdmd.EventComplianceAction) {
		t.Fatalf("an endpoint without types = %#v, want an empty list that wants everything", all2.EventTypes)
	}
	list, err := s.ListWebhookEndpoints(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "a-siem" || list[1].Name != "okta" {
		t.Fatalf("ListWebhookEndpoints = %+v", list)
	}

	// Updates change what they set; a rejected update changes nothing.
	upd, err := s.UpdateWebhookEndpoint(ctx, e.ID, mdmd.WebhookEndpointUpdate{Name: ptr("okta-prod"),
		URL: ptr("https://okta.example.com/v2"), EventTypes: &[]string{mdmd.EventComplianceAction}})
	must(t, err)
	if upd.Name != "okta-prod" || upd.URL != "https://okta.example.com/v2" || strings.Join(upd.EventTypes, ",") != "compliance.action" ||
		!upd.Enabled || upd.UpdatedAt.Before(upd.CreatedAt) {
		t.Fatalf("UpdateWebhookEndpoint = %+v", upd)
	}
	for _, bad := range []mdmd.WebhookEndpointUpdate{
		{EventTypes: &[]string{"device.exploded"}},
		{URL: ptr("http://okta.example.com")},
		{Name: ptr("")},
		{Name: ptr("a-siem")},
	} {
		_, err := s.UpdateWebhookEndpoint(ctx, e.ID, bad)
		if code := mdmd.ErrorCode(err); code != mdmd.EInvalid && code != mdmd.EConflict {
			t.Fatalf("bad update %+v: %v", bad, err)
		}
	}
	if again, _ := s.GetWebhookEndpoint(ctx, e.ID); again.Name != "okta-prod" || again.URL != upd.URL ||
		strings.Join(again.EventTypes, ",") != "compliance.action" {
		t.Fatalf("a rejected update changed the endpoint: %+v", again)
	}
	_, err = s.UpdateWebhookEndpoint(ctx, "missing", mdmd.WebhookEndpointUpdate{Name: ptr("x")})
	wantCode(t, err, mdmd.ENotFound)

	// mdmd disables with a reason; an administrator's change clears it.
	must(t, s.DisableWebhookEndpoint(ctx, e.ID, "the receiver answered 410 Gone"))
	wantCode(t, s.DisableWebhookEndpoint(ctx, "missing", "x"), mdmd.ENotFound)
	dis, _ := s.GetWebhookEndpoint(ctx, e.ID)
	if dis.Enabled || dis.DisabledReason != "the receiver answered 410 Gone" {
		t.Fatalf("disabled endpoint = %+v", dis)
	}
	en, err := s.UpdateWebhookEndpoint(ctx, e.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(true)})
	must(t, err)
	if !en.Enabled || en.DisabledReason != "" {
		t.Fatalf("re-enabled endpoint = %+v", en)
	}

	// Rotation keeps the replaced secret until the given time, or not at all.
	until := time.Now().Add(24 * time.Hour)
	rot, err := s.RotateWebhookSecret(ctx, e.ID, []byte("sealed:two"), &until)
	must(t, err)
	if string(rot.SecretSealed) != "sealed:two" || string(rot.PreviousSecretSealed) != "sealed:okta" ||
		rot.PreviousSecretUntil == nil || rot.PreviousSecretUntil.Sub(until).Abs() > time.Millisecond {
		t.Fatalf("rotation keeping the previous secret = %+v", rot)
	}
	rot, err = s.RotateWebhookSecret(ctx, e.ID, []byte("sealed:three"), &until)
	must(t, err)
	if string(rot.SecretSealed) != "sealed:three" || string(rot.PreviousSecretSealed) != "sealed:two" {
		t.Fatalf("second rotation = %q, previous %q", rot.SecretSealed, rot.PreviousSecretSealed)
	}
	rot, err = s.RotateWebhookSecret(ctx, e.ID, []byte("sealed:four"), nil)
	must(t, err)
	if string(rot.SecretSealed) != "sealed:four" || rot.PreviousSecretSealed != nil || rot.PreviousSecretUntil != nil {
		t.Fatalf("rotation forgetting the previous secret = %+v", rot)
	}
	_, err = s.RotateWebhookSecret(ctx, "missing", []byte("x"), nil)
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.RotateWebhookSecret(ctx, e.ID, nil, nil)
	wantCode(t, err, mdmd.EInvalid)

	// Deleting an endpoint takes its deliveries and their log with it.
	d := createDeliveries(t, s, testPing(e.ID))[0]
	got2, err := s.ClaimWebhookDeliveries(ctx, "w", 10, time.Minute)
	must(t, err)
	if len(got2) != 1 {
		t.Fatalf("claimed %d deliveries, want the ping", len(got2))
	}
	_, err = s.RecordWebhookAttempt(ctx, d.ID, "w", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
	must(t, err)
	must(t, s.DeleteWebhookEndpoint(ctx, e.ID))
	wantCode(t, s.DeleteWebhookEndpoint(ctx, e.ID), mdmd.ENotFound)
	_, err = s.GetWebhookEndpoint(ctx, e.ID)
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.GetWebhookDelivery(ctx, d.ID)
	wantCode(t, err, mdmd.ENotFound)
	if as, _ := s.ListWebhookAttempts(ctx, []string{d.ID}); len(as) != 0 {
		t.Fatalf("attempts of a deleted endpoint remain: %+v", as)
	}
}

func testWebhookEndpointValidation(t *testing.T, s *storage.Store) {
	tests := []struct {
		name  string
		edit  func(e *mdmd.WebhookEndpoint)
		field string
	}{
		{"empty name", func(e *mdmd.WebhookEndpoint) { e.Name = "" }, "name"},
		{"padded name", func(e *mdmd.WebhookEndpoint) { e.Name = " siem" }, "name"},
		{"oversized name", func(e *mdmd.WebhookEndpoint) { e.Name = strings.Repeat("n", 201) }, "name"},
		{"plain http", func(e *mdmd.WebhookEndpoint) { e.URL = "http://siem.example.com/hook" }, "url"},
		{"http to a private address", func(e *mdmd.WebhookEndpoint) { e.URL = "http://10.0.0.1/hook" }, "url"},
		{"other scheme", func(e *mdmd.WebhookEndpoint) { e.URL = "ftp://siem.example.com/hook" }, "url"},
		{"relative", func(e *mdmd.WebhookEndpoint) { e.URL = "/hook" }, "url"},
		{"no host", func(e *mdmd.WebhookEndpoint) { e.URL = "https:///hook" }, "url"},
		{"credentials", func(e *mdmd.WebhookEndpoint) { e.URL = "https://user:pw@siem.example.com/hook" }, "url"},
		{"fragment", func(e *mdmd.WebhookEndpoint) { e.URL = "https://siem.example.com/hook#x" }, "url"},
		{"oversized url", func(e *mdmd.WebhookEndpoint) { e.URL = "https://siem.example.com/" + strings.Repeat("a", 2000) }, "url"},
		{"unknown event type", func(e *mdmd.WebhookEndpoint) {
			e.EventTypes = []string{mdmd.EventThreatChanged, "device.exploded"}
		}, "event_types"},
		{"test type", func(e *mdmd.WebhookEndpoint) { e.EventTypes = []string{mdmd.EventWebhookTest} }, "event_types"},
		{"no secret", func(e *mdmd.WebhookEndpoint) { e.SecretSealed = nil }, "secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &mdmd.WebhookEndpoint{Name: "siem", URL: "https://siem.example.com/hook", Enabled: true, SecretSealed: []byte("s")}
			tc.edit(e)
			err := s.CreateWebhookEndpoint(ctx, e)
			var me *mdmd.Error
			if !errors.As(err, &me) || me.Code != mdmd.EInvalid || me.Field != tc.field {
				t.Fatalf("CreateWebhookEndpoint error = %v, want invalid %s", err, tc.field)
			}
		})
	}
	if list, _ := s.ListWebhookEndpoints(ctx); len(list) != 0 {
		t.Fatalf("invalid endpoints were stored: %+v", list)
	}
	for i, ok := range []string{"https://siem.example.com:8443/a?b=c", "http://127.0.0.1:8080/hook", "http://localhost/hook",
		"http://[::1]:9000/hook", "HTTPS://SIEM.EXAMPLE.COM/"} {
		e := &mdmd.WebhookEndpoint{Name: fmt.Sprintf("ok-%d", i), URL: ok, SecretSealed: []byte("s")}
		if err := s.CreateWebhookEndpoint(ctx, e); err != nil {
			t.Errorf("valid URL %s rejected: %v", ok, err)
		}
	}
}

// fanOut is what the webhooks package does in its ConsumeEvents
// transaction, reduced to the storage calls.
func fanOut(tx *storage.Store, evs []mdmd.Event) error {
	eps, err := tx.ListWebhookEndpoints(ctx)
	if err != nil {
		return err
	}
	var ds []mdmd.WebhookDelivery
	for _, ev := range evs {
		for _, e := range eps {
			if e.Enabled && e.Wants(ev.Type) {
				ds = append(ds, mdmd.WebhookDelivery{EndpointID: e.ID, EventSeq: ev.Seq, EventType: ev.Type,
					Payload: mdmd.RawJSON(fmt.Sprintf(`{"type":%q,"data":%s}`, ev.Type, ev.Data))})
			}
		}
	}
	_, err = tx.CreateWebhookDeliveries(ctx, ds)
	return err
}

func testWebhookFanoutConcurrent(t *testing.T, s *storage.Store) {
	all := newWebhookEndpoint(t, s, "all")
	threats := newWebhookEndpoint(t, s, "threats", mdmd.EventThreatChanged)
	off := newWebhookEndpoint(t, s, "off")
	_, err := s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(false)})
	must(t, err)

	const events, workers = 60, 4
	for i := range events {
		must(t, s.AppendEvent(ctx, mdmd.EventTypes[i%len(mdmd.EventTypes)], fmt.Sprintf("dev-%d", i), map[string]int{"i": i}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.ConsumeEvents(ctx, "webhooks", 7, fanOut)
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ds, _, err := s.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{Limit: mdmd.MaxPageSize})
	must(t, err)
	per := map[string]map[int64]int{}
	msgIDs := map[string]bool{}
	for _, d := range ds {
		if per[d.EndpointID] == nil {
			per[d.EndpointID] = map[int64]int{}
		}
		per[d.EndpointID][d.EventSeq]++
		msgIDs[d.MessageID] = true
		if d.State != mdmd.WebhookPending || d.Attempts != 0 || !strings.HasPrefix(d.MessageID, "msg_") {
			t.Fatalf("new delivery = %+v", d)
		}
	}
	if len(per[all.ID]) != events || len(per[threats.ID]) != events/len(mdmd.EventTypes) || len(per[off.ID]) != 0 {
		t.Fatalf("deliveries: all %d, threats %d, disabled %d; want %d, %d, 0", len(per[all.ID]), len(per[threats.ID]),
			len(per[off.ID]), events, events/len(mdmd.EventTypes))
	}
	for ep, seqs := range per {
		for seq, n := range seqs {
			if n != 1 {
				t.Errorf("event %d fanned out %d times to %s", seq, n, ep)
			}
		}
	}
	if len(msgIDs) != len(ds) {
		t.Fatalf("%d message IDs for %d deliveries", len(msgIDs), len(ds))
	}

	// A second delivery of one event to one endpoint is never created.
	dup := ds[0]
	n, err := s.CreateWebhookDeliveries(ctx, []mdmd.WebhookDelivery{{EndpointID: dup.EndpointID, EventSeq: dup.EventSeq,
		EventType: dup.EventType, Payload: dup.Payload}})
	must(t, err)
	if n != 0 {
		t.Fatalf("a duplicate delivery was created")
	}
	// Bad deliveries are refused.
	for _, bad := range []mdmd.WebhookDelivery{
		{EndpointID: all.ID, EventSeq: 1, EventType: "device.exploded", Payload: mdmd.RawJSON(`{}`)},
		{EndpointID: all.ID, EventType: mdmd.EventThreatChanged, Payload: mdmd.RawJSON(`{}`)},
		{EndpointID: all.ID, EventSeq: 5, EventType: mdmd.EventWebhookTest, Payload: mdmd.RawJSON(`{}`)},
		{EndpointID: all.ID, EventType: mdmd.EventWebhookTest, Payload: mdmd.RawJSON(`{not json`)},
		{EventType: mdmd.EventWebhookTest, Payload: mdmd.RawJSON(`{}`)},
	} {
		_, err := s.CreateWebhookDeliveries(ctx, []mdmd.WebhookDelivery{bad})
		wantCode(t, err, mdmd.EInvalid)
	}
	_, err = s.CreateWebhookDeliveries(ctx, []mdmd.WebhookDelivery{testPing("no-such-endpoint")})
	wantCode(t, err, mdmd.ENotFound)
}

func testWebhookClaimConcurrent(t *testing.T, s *storage.Store) {
	on := newWebhookEndpoint(t, s, "on")
	off := newWebhookEndpoint(t, s, "off")
	const due, workers = 60, 6
	var ds []mdmd.WebhookDelivery
	for range due {
		ds = append(ds, testPing(on.ID))
	}
	createDeliveries(t, s, ds...)
	later := testPing(on.ID)
	later.NextAttemptAt = time.Now().Add(time.Hour)
	createDeliveries(t, s, later, testPing(off.ID))
	_, err := s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(false)})
	must(t, err)

	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				owner := fmt.Sprintf("w%d-%d", w, round)
				got, err := s.ClaimWebhookDeliveries(ctx, owner, 3, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, d := range got {
					mu.Lock()
					claimed[d.ID]++
					mu.Unlock()
					if d.LeaseOwner != owner {
						t.Errorf("claimed delivery has lease owner %q, want %q", d.LeaseOwner, owner)
					}
					if _, err := s.RecordWebhookAttempt(ctx, d.ID, owner, mdmd.WebhookAttempt{Status: 204}, mdmd.WebhookDelivered, time.Time{}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(claimed) != due {
		t.Fatalf("%d distinct deliveries claimed, want %d (not the later one, not the disabled endpoint's)", len(claimed), due)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times", id, n)
		}
	}
	if claimed[later.ID] != 0 {
		t.Error("a delivery not yet due was claimed")
	}
	done, _, err := s.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{State: mdmd.WebhookDelivered, Limit: mdmd.MaxPageSize})
	must(t, err)
	if len(done) != due {
		t.Fatalf("%d delivered, want %d", len(done), due)
	}
	for _, d := range done {
		if d.Attempts != 1 || d.LastStatus != 204 || d.DeliveredAt == nil || d.LeaseOwner != "" || d.LeaseUntil != nil {
			t.Fatalf("delivered delivery = %+v", d)
		}
	}
	// Enabling the endpoint releases its waiting delivery.
	_, err = s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(true)})
	must(t, err)
	got, err := s.ClaimWebhookDeliveries(ctx, "late", 10, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].EndpointID != off.ID {
		t.Fatalf("after enabling, claimed %+v", got)
	}
	_, err = s.ClaimWebhookDeliveries(ctx, "", 1, time.Minute)
	wantCode(t, err, mdmd.EInvalid)
}

func testWebhookLeases(t *testing.T, s *storage.Store) {
	e := newWebhookEndpoint(t, s, "lease")
	d := createDeliveries(t, s, testPing(e.ID))[0]
	got, err := s.ClaimWebhookDeliveries(ctx, "dying", 1, 20*time.Millisecond)
	must(t, err)
	if len(got) != 1 {
		t.Fatal("not claimed")
	}
	if again, _ := s.ClaimWebhookDeliveries(ctx, "eager", 1, time.Minute); len(again) != 0 {
		t.Fatalf("a leased delivery was claimed twice")
	}
	time.Sleep(50 * time.Millisecond)
	// The lease ran out: another worker takes over, and the first is fenced off.
	got, err = s.ClaimWebhookDeliveries(ctx, "rescuer", 1, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].ID != d.ID {
		t.Fatalf("expired lease not reclaimed: %+v", got)
	}
	_, err = s.RecordWebhookAttempt(ctx, d.ID, "dying", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
	wantCode(t, err, mdmd.ELeaseLost)
	wantCode(t, s.ReleaseWebhookDelivery(ctx, d.ID, "dying", time.Now()), mdmd.ELeaseLost)
	if as, _ := s.ListWebhookAttempts(ctx, []string{d.ID}); len(as) != 0 {
		t.Fatalf("a fenced-off worker logged an attempt: %+v", as)
	}
	// Released untried, it is due again at once and no attempt is counted.
	must(t, s.ReleaseWebhookDelivery(ctx, d.ID, "rescuer", time.Now().Add(-time.Second)))
	got, err = s.ClaimWebhookDeliveries(ctx, "third", 1, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].Attempts != 0 {
		t.Fatalf("released delivery: %+v", got)
	}
	rec, err := s.RecordWebhookAttempt(ctx, d.ID, "third", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
	must(t, err)
	if rec.State != mdmd.WebhookDelivered || rec.Attempts != 1 {
		t.Fatalf("recorded = %+v", rec)
	}
}

func testWebhookRetriesAndLog(t *testing.T, s *storage.Store) {
	e := newWebhookEndpoint(t, s, "retry")
	other := newWebhookEndpoint(t, s, "other")
	d := createDeliveries(t, s, testPing(e.ID))[0]
	claim := func(owner string) []mdmd.WebhookDelivery {
		t.Helper()
		got, err := s.ClaimWebhookDeliveries(ctx, owner, 10, time.Minute)
		must(t, err)
		return got
	}
	if got := claim("w1"); len(got) != 1 {
		t.Fatalf("claimed %d", len(got))
	}
	_, err := s.RecordWebhookAttempt(ctx, d.ID, "w1", mdmd.WebhookAttempt{Status: 503}, mdmd.WebhookPending, time.Time{})
	wantCode(t, err, mdmd.EInvalid)
	_, err = s.RecordWebhookAttempt(ctx, d.ID, "w1", mdmd.WebhookAttempt{Status: 503}, "limbo", time.Time{})
	wantCode(t, err, mdmd.EInvalid)
	next := time.Now().Add(time.Hour)
	rec, err := s.RecordWebhookAttempt(ctx, d.ID, "w1", mdmd.WebhookAttempt{Status: 503, Error: "the receiver answered 503",
		DurationMS: 12}, mdmd.WebhookPending, next)
	must(t, err)
	if rec.State != mdmd.WebhookPending || rec.Attempts != 1 || rec.RoundAttempts != 1 || rec.LastStatus != 503 ||
		rec.NextAttemptAt.Sub(next).Abs() > time.Millisecond || rec.LeaseOwner != "" {
		t.Fatalf("after a failed attempt: %+v", rec)
	}
	// Released: the worker's claim is over, and the retry is not due yet.
	_, err = s.RecordWebhookAttempt(ctx, d.ID, "w1", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
	wantCode(t, err, mdmd.ELeaseLost)
	if got := claim("w2"); len(got) != 0 {
		t.Fatalf("a retry was claimed before it was due: %+v", got)
	}

	// A redelivery is due now, keeps the message ID and starts a new round.
	_, err = s.RedeliverWebhook(ctx, other.ID, d.ID)
	wantCode(t, err, mdmd.ENotFound)
	red, err := s.RedeliverWebhook(ctx, e.ID, d.ID)
	must(t, err)
	if red.MessageID != d.MessageID || red.RoundAttempts != 0 || red.Attempts != 1 || red.State != mdmd.WebhookPending {
		t.Fatalf("redelivered = %+v", red)
	}
	if got := claim("w3"); len(got) != 1 {
		t.Fatalf("redelivery not claimed")
	}
	rec, err = s.RecordWebhookAttempt(ctx, d.ID, "w3", mdmd.WebhookAttempt{Error: "connection refused " + strings.Repeat("é", 800)},
		mdmd.WebhookFailed, time.Time{})
	must(t, err)
	if rec.State != mdmd.WebhookFailed || rec.Attempts != 2 || rec.RoundAttempts != 1 || rec.LastStatus != 0 || len(rec.LastError) > 1000 {
		t.Fatalf("given up: %+v", rec)
	}
	if got := claim("w4"); len(got) != 0 {
		t.Fatal("a failed delivery was claimed")
	}
	_, err = s.RedeliverWebhook(ctx, e.ID, d.ID)
	must(t, err)
	claim("w5")
	rec, err = s.RecordWebhookAttempt(ctx, d.ID, "w5", mdmd.WebhookAttempt{Status: 200, DurationMS: 3}, mdmd.WebhookDelivered, time.Time{})
	must(t, err)
	if rec.State != mdmd.WebhookDelivered || rec.Attempts != 3 || rec.DeliveredAt == nil {
		t.Fatalf("delivered: %+v", rec)
	}

	as, err := s.ListWebhookAttempts(ctx, []string{d.ID})
	must(t, err)
	var log []string
	for _, a := range as {
		log = append(log, fmt.Sprintf("%d:%d", a.Attempt, a.Status))
		if a.At.IsZero() || a.DeliveryID != d.ID {
			t.Fatalf("attempt = %+v", a)
		}
	}
	if got := strings.Join(log, ","); got != "1:503,2:0,3:200" {
		t.Fatalf("attempt log = %s", got)
	}
	if as[0].DurationMS != 12 || as[0].Error != "the receiver answered 503" {
		t.Fatalf("first attempt = %+v", as[0])
	}

	// Listing: by state, newest first, in pages.
	var pings []mdmd.WebhookDelivery
	for range 5 {
		pings = append(pings, testPing(e.ID))
	}
	createDeliveries(t, s, pings...)
	createDeliveries(t, s, testPing(other.ID))
	delivered, _, err := s.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{EndpointID: e.ID, State: mdmd.WebhookDelivered})
	must(t, err)
	if len(delivered) != 1 || delivered[0].ID != d.ID {
		t.Fatalf("delivered = %+v", delivered)
	}
	var seen []string
	f := mdmd.WebhookDeliveryFilter{EndpointID: e.ID, Limit: 2}
	for pages := 0; ; pages++ {
		page, next, err := s.ListWebhookDeliveries(ctx, f)
		must(t, err)
		for _, p := range page {
			seen = append(seen, p.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		f.After = next
	}
	if len(seen) != 6 || !slices.IsSortedFunc(seen, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("paged %d deliveries %v, want 6 newest first", len(seen), seen)
	}
	for _, bad := range []mdmd.WebhookDeliveryFilter{{State: "lost"}, {Limit: mdmd.MaxPageSize + 1}} {
		_, _, err := s.ListWebhookDeliveries(ctx, bad)
		wantCode(t, err, mdmd.EInvalid)
	}
}

func testWebhookPrune(t *testing.T, s *storage.Store) {
	e := newWebhookEndpoint(t, s, "prune")
	ds := createDeliveries(t, s, testPing(e.ID), testPing(e.ID), testPing(e.ID))
	got, err := s.ClaimWebhookDeliveries(ctx, "w", 10, time.Minute)
	must(t, err)
	if len(got) != 3 {
		t.Fatalf("claimed %d", len(got))
	}
	_, err = s.RecordWebhookAttempt(ctx, ds[0].ID, "w", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
	must(t, err)
	_, err = s.RecordWebhookAttempt(ctx, ds[1].ID, "w", mdmd.WebhookAttempt{Status: 500}, mdmd.WebhookFailed, time.Time{})
	must(t, err)
	_, err = s.RecordWebhookAttempt(ctx, ds[2].ID, "w", mdmd.WebhookAttempt{Status: 500}, mdmd.WebhookPending, time.Now().Add(time.Hour))
	must(t, err)

	n, err := s.PruneWebhookDeliveries(ctx, time.Now().Add(-time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("pruned %d recent deliveries", n)
	}
	if as, _ := s.ListWebhookAttempts(ctx, []string{ds[0].ID, ds[1].ID, ds[2].ID}); len(as) != 3 {
		t.Fatalf("recent attempts pruned: %d left", len(as))
	}
	n, err = s.PruneWebhookDeliveries(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if n != 2 {
		t.Fatalf("pruned %d, want the delivered and the failed one", n)
	}
	left, _, err := s.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{})
	must(t, err)
	if len(left) != 1 || left[0].ID != ds[2].ID {
		t.Fatalf("left %+v, want only the pending delivery", left)
	}
	if as, _ := s.ListWebhookAttempts(ctx, []string{ds[0].ID, ds[1].ID, ds[2].ID}); len(as) != 0 {
		t.Fatalf("old attempts kept: %+v", as)
	}
}

// unheldPending counts an endpoint's pending deliveries that are not
// held: the ones in the partial index that claims walk.
func unheldPending(t *testing.T, s *storage.Store, endpointID string) int {
	t.Helper()
	q := "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND state = 'pending' AND NOT held"
	if s.DialectName() == migrations.Postgres {
		q = strings.Replace(q, "?", "$1", 1)
	}
	var n int
	must(t, s.DB().QueryRowContext(ctx, q, endpointID).Scan(&n))
	return n
}

// The pending deliveries of a disabled endpoint are held, out of the
// index claims walk, whichever way the endpoint was disabled and however
// they were queued; enabling it releases them on their own schedule.
func testWebhookHeldWhileDisabled(t *testing.T, s *storage.Store) {
	off := newWebhookEndpoint(t, s, "off")
	on := newWebhookEndpoint(t, s, "on")
	var ds []mdmd.WebhookDelivery
	for range 30 {
		ds = append(ds, testPing(off.ID))
	}
	later := testPing(off.ID)
	later.NextAttemptAt = time.Now().Add(time.Hour)
	ds = append(ds, later)
	ds = createDeliveries(t, s, ds...)
	later = ds[len(ds)-1]
	createDeliveries(t, s, testPing(on.ID), testPing(on.ID))
	// One of the disabled endpoint's deliveries is under a claim: it is
	// held too, and the attempt is still recorded.
	got, err := s.ClaimWebhookDeliveries(ctx, "w0", 1, time.Minute)
	must(t, err)
	if len(got) != 1 || got[0].EndpointID != off.ID {
		t.Fatalf("claimed %+v", got)
	}
	inFlight := got[0]

	_, err = s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(false)})
	must(t, err)
	if n := unheldPending(t, s, off.ID); n != 0 {
		t.Fatalf("%d pending deliveries of a disabled endpoint are not held", n)
	}
	if n := unheldPending(t, s, on.ID); n != 2 {
		t.Fatalf("%d of the enabled endpoint's deliveries are due, want 2", n)
	}
	_, err = s.RecordWebhookAttempt(ctx, inFlight.ID, "w0", mdmd.WebhookAttempt{Status: 503}, mdmd.WebhookPending, time.Now().Add(-time.Second))
	must(t, err)
	got, err = s.ClaimWebhookDeliveries(ctx, "w1", 100, time.Minute)
	must(t, err)
	if len(got) != 2 || got[0].EndpointID != on.ID || got[1].EndpointID != on.ID {
		t.Fatalf("claimed %d deliveries with an endpoint disabled, want the 2 of the enabled one", len(got))
	}
	for _, d := range got {
		_, err := s.RecordWebhookAttempt(ctx, d.ID, "w1", mdmd.WebhookAttempt{Status: 200}, mdmd.WebhookDelivered, time.Time{})
		must(t, err)
	}
	// Queued while disabled (a redelivery, a delivery written by a fan-out
	// that read the endpoint before it was disabled): held as well.
	late := createDeliveries(t, s, testPing(off.ID))[0]
	if !late.Held {
		t.Fatal("a delivery queued for a disabled endpoint is not held")
	}
	red, err := s.RedeliverWebhook(ctx, off.ID, inFlight.ID)
	must(t, err)
	if !red.Held {
		t.Fatal("a redelivery for a disabled endpoint is not held")
	}
	if n := unheldPending(t, s, off.ID); n != 0 {
		t.Fatalf("%d pending deliveries of a disabled endpoint are not held", n)
	}

	// Enabled again: released, each due at its own time.
	en, err := s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(true)})
	must(t, err)
	if !en.Enabled {
		t.Fatal("not enabled")
	}
	if n := unheldPending(t, s, off.ID); n != 32 {
		t.Fatalf("%d deliveries released, want 32", n)
	}
	got, err = s.ClaimWebhookDeliveries(ctx, "w2", 100, time.Minute)
	must(t, err)
	if len(got) != 31 {
		t.Fatalf("claimed %d after enabling, want 31 (not the one due in an hour)", len(got))
	}
	for _, d := range got {
		if d.ID == later.ID || d.Held {
			t.Fatalf("claimed %+v", d)
		}
	}
	if d, _ := s.GetWebhookDelivery(ctx, later.ID); d.NextAttemptAt.Before(time.Now().Add(50 * time.Minute)) {
		t.Fatalf("holding moved a delivery's schedule: %v", d.NextAttemptAt)
	}

	// Disabled by mdmd itself (a receiver answered 410 Gone): held too.
	for _, d := range got {
		_, err := s.RecordWebhookAttempt(ctx, d.ID, "w2", mdmd.WebhookAttempt{Status: 500}, mdmd.WebhookPending, time.Now().Add(-time.Second))
		must(t, err)
	}
	must(t, s.DisableWebhookEndpoint(ctx, off.ID, "the receiver answered 410 Gone"))
	if n := unheldPending(t, s, off.ID); n != 0 {
		t.Fatalf("%d pending deliveries of an endpoint mdmd disabled are not held", n)
	}
	if got, _ := s.ClaimWebhookDeliveries(ctx, "w3", 100, time.Minute); len(got) != 0 {
		t.Fatalf("claimed %d deliveries of a disabled endpoint", len(got))
	}
	// An update that does not touch Enabled leaves them held.
	_, err = s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Name: ptr("off-renamed")})
	must(t, err)
	if n := unheldPending(t, s, off.ID); n != 0 {
		t.Fatalf("a rename released %d deliveries", n)
	}
	_, err = s.UpdateWebhookEndpoint(ctx, off.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(true)})
	must(t, err)
	if got, _ := s.ClaimWebhookDeliveries(ctx, "w4", 100, time.Minute); len(got) != 31 {
		t.Fatalf("claimed %d after enabling again, want 31", len(got))
	}
}

// Deliveries queued while the endpoint is being disabled end up held:
// the disable and the queueing wait for each other.
func testWebhookHoldRace(t *testing.T, s *storage.Store) {
	e := newWebhookEndpoint(t, s, "race")
	for round := range 5 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := s.CreateWebhookDeliveries(ctx, []mdmd.WebhookDelivery{testPing(e.ID), testPing(e.ID)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(round) * time.Millisecond)
			if _, err := s.UpdateWebhookEndpoint(ctx, e.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(false)}); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if n := unheldPending(t, s, e.ID); n != 0 {
			t.Fatalf("round %d: %d pending deliveries of a disabled endpoint are not held", round, n)
		}
		_, err := s.UpdateWebhookEndpoint(ctx, e.ID, mdmd.WebhookEndpointUpdate{Enabled: ptr(true)})
		must(t, err)
	}
}
