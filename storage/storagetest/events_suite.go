package storagetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func eventTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"EventLog", testEventLog},
		{"EventConsumersConcurrent", testEventConsumersConcurrent},
	}
}

func testEventLog(t *testing.T, s *storage.Store) {
	d := iosDevice("EVENTS-1")
	d.OwnerUser = "ada@example.com"
	must(t, s.CreateDevice(ctx, d))
	wantCode(t, s.AppendEvent(ctx, "no.such.type", d.ID, map[string]string{}), mdmd.EInvalid)

	// A change of compliance state is logged with the device's identity
	// and the failed rules; a refresh of the same state is not.
	rules := mdmd.RawJSON(`[{"rule":"os_version","outcome":"failed"},{"rule":"passcode","outcome":"passed"}]`)
	for range 2 {
		_, _, err := s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: "noncompliant", Reason: "old OS", Rules: rules, EvaluatedAt: s.Now()}, "posture")
		must(t, err)
	}
	evs, err := s.ListEvents(ctx, 0, 10)
	must(t, err)
	if len(evs) != 1 || evs[0].Type != mdmd.EventComplianceChanged || evs[0].DeviceID != d.ID {
		t.Fatalf("events = %+v, want one compliance change", evs)
	}
	var data mdmd.ComplianceChangedData
	must(t, json.Unmarshal(evs[0].Data, &data))
	if data.OwnerUser != "ada@example.com" || data.PreviousState != "" || data.CurrentState != "noncompliant" ||
		len(data.FailedRules) != 1 || data.FailedRules[0] != "os_version" || data.Cause != "posture" {
		t.Errorf("event data = %+v", data)
	}

	// A failed consumer leaves its cursor where it was.
	_, err = s.ConsumeEvents(ctx, "c1", 10, func(*storage.Store, []mdmd.Event) error { return fmt.Errorf("receiver down") })
	if err == nil {
		t.Fatal("a failing consumer reported success")
	}
	var got []int64
	n, err := s.ConsumeEvents(ctx, "c1", 10, func(_ *storage.Store, evs []mdmd.Event) error {
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		return nil
	})
	must(t, err)
	if n != 1 || len(got) != 1 || got[0] != evs[0].Seq {
		t.Fatalf("consumed %d %v, want the one event", n, got)
	}
	n, err = s.ConsumeEvents(ctx, "c1", 10, func(*storage.Store, []mdmd.Event) error { return nil })
	must(t, err)
	if n != 0 {
		t.Errorf("consumed %d events twice", n)
	}

	// Pruning keeps what a consumer has not read.
	must(t, s.AppendEvent(ctx, mdmd.EventThreatChanged, d.ID, mdmd.ThreatChangedData{CurrentLevel: "high"}))
	pruned, err := s.PruneEvents(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if pruned != 1 {
		t.Errorf("pruned %d, want the one event c1 has read", pruned)
	}
	left, err := s.ListEvents(ctx, 0, 10)
	must(t, err)
	if len(left) != 1 || left[0].Type != mdmd.EventThreatChanged {
		t.Errorf("left %+v, want the unread threat event", left)
	}
}

func testEventConsumersConcurrent(t *testing.T, s *storage.Store) {
	const events, workers = 60, 4
	for i := range events {
		must(t, s.AppendEvent(ctx, mdmd.EventThreatChanged, fmt.Sprintf("dev-%d", i), mdmd.ThreatChangedData{CurrentLevel: "low"}))
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.ConsumeEvents(ctx, "fanout", 7, func(_ *storage.Store, evs []mdmd.Event) error {
					mu.Lock()
					defer mu.Unlock()
					for _, e := range evs {
						seen[e.Seq]++
					}
					return nil
				})
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
	if len(seen) != events {
		t.Fatalf("consumed %d distinct events, want %d", len(seen), events)
	}
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("event %d consumed %d times", seq, n)
		}
	}
}
