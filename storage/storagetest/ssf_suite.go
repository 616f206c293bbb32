package storagetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func ssfTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"SSFStreams", testSSFStreams},
		{"SSFSubjects", testSSFSubjects},
		{"SSFPushQueue", testSSFPushQueue},
		{"SSFPushConcurrentClaims", testSSFPushConcurrentClaims},
		{"SSFPollQueue", testSSFPollQueue},
		{"SSFPollConcurrent", testSSFPollConcurrent},
		{"SSFVerificationAndPrune", testSSFVerificationAndPrune},
		{"SSFStatusBy", testSSFStatusBy},
		{"SSFDeadOwners", testSSFDeadOwners},
		{"SSFFanoutDisableRace", testSSFFanoutDisableRace},
		{"SSFSubjectLimit", testSSFSubjectLimit},
		{"SSFPollErrorsBatched", testSSFPollErrorsBatched},
		{"SigningKeys", testSigningKeys},
	}
}

func ssfStream(owner, method string) *mdmd.SSFStream {
	st := &mdmd.SSFStream{OwnerID: owner, Aud: mdmd.RawJSON(`"rx"`), DeliveryMethod: method,
		EventsDelivered: mdmd.RawJSON(`["e"]`), SubjectFormat: "complex"}
	if method == mdmd.SSFDeliveryPush {
		st.EndpointURL = "https://rx.example.com/events"
	}
	return st
}

func ssfSets(streamID string, n int, prefix string) []mdmd.SSFSet {
	out := make([]mdmd.SSFSet, n)
	for i := range out {
		out[i] = mdmd.SSFSet{JTI: fmt.Sprintf("%s-%s-%03d", prefix, streamID, i), StreamID: streamID, EventType: "e",
			SubjectKey: fmt.Sprintf("dev-%d", i%3), Claims: mdmd.RawJSON(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

func testSSFStreams(t *testing.T, s *storage.Store) {
	wantCode(t, s.CreateSSFStream(ctx, &mdmd.SSFStream{OwnerID: "a", Aud: mdmd.RawJSON(`"x"`), DeliveryMethod: "urn:example:smoke",
		EventsDelivered: mdmd.RawJSON(`[]`), SubjectFormat: "complex"}, 0), mdmd.EInvalid)
	bad := ssfStream("a", mdmd.SSFDeliveryPush)
	bad.EndpointURL = ""
	wantCode(t, s.CreateSSFStream(ctx, bad, 0), mdmd.EInvalid)

	a1 := ssfStream("a", mdmd.SSFDeliveryPush)
	must(t, s.CreateSSFStream(ctx, a1, 2))
	if a1.ID == "" || a1.Status != mdmd.SSFStatusEnabled || a1.CreatedAt.IsZero() {
		t.Fatalf("created stream = %+v", a1)
	}
	a2 := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, a2, 2))
	wantCode(t, s.CreateSSFStream(ctx, ssfStream("a", mdmd.SSFDeliveryPoll), 2), mdmd.EConflict)
	b1 := ssfStream("b", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, b1, 2))

	// Ownership: another receiver's stream does not exist for it.
	_, err := s.GetSSFStream(ctx, "b", a1.ID)
	wantCode(t, err, mdmd.ENotFound)
	got, err := s.GetSSFStream(ctx, "a", a1.ID)
	must(t, err)
	if got.EndpointURL != a1.EndpointURL || string(got.Aud) != `"rx"` {
		t.Fatalf("GetSSFStream = %+v", got)
	}
	list, err := s.ListSSFStreams(ctx, "a")
	must(t, err)
	if len(list) != 2 || list[0].ID != a1.ID || list[1].ID != a2.ID {
		t.Fatalf("ListSSFStreams(a) = %+v", list)
	}
	all, err := s.ListSSFStreams(ctx, "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("ListSSFStreams() = %d streams", len(all))
	}
	wantCode(t, s.DeleteSSFStream(ctx, "b", a2.ID), mdmd.ENotFound)

	// Update: configuration changes, aud and owner do not; switching to
	// push puts outstanding polled SETs back in the queue.
	must(t, s.EnqueueSSFSets(ctx, ssfSets(a2.ID, 2, "u")))
	polled, _, err := s.PollSSFSets(ctx, a2.ID, nil, nil, 1, time.Hour)
	must(t, err)
	if len(polled) != 1 {
		t.Fatalf("polled %d", len(polled))
	}
	upd := *a2
	upd.DeliveryMethod, upd.EndpointURL, upd.Description, upd.Aud = mdmd.SSFDeliveryPush, "https://rx.example.com/2", "two", mdmd.RawJSON(`"changed"`)
	upd.EventsRequested = mdmd.RawJSON(`["e","f"]`)
	must(t, s.UpdateSSFStream(ctx, &upd, false))
	if upd.Description != "two" || string(upd.Aud) != `"rx"` || upd.DeliveryMethod != mdmd.SSFDeliveryPush || string(upd.EventsRequested) != `["e","f"]` {
		t.Fatalf("updated stream = %+v", upd)
	}
	counts, err := s.CountSSFSets(ctx, a2.ID)
	must(t, err)
	if counts[mdmd.SETPending] != 2 {
		t.Fatalf("after switching to push: %v, want both SETs pending", counts)
	}
	other := upd
	other.OwnerID = "b"
	wantCode(t, s.UpdateSSFStream(ctx, &other, false), mdmd.ENotFound)

	// Status: disabling drops what the stream holds, except control SETs.
	_, err = s.SetSSFStreamStatus(ctx, "a", a2.ID, "sleeping", "", mdmd.SSFStatusByReceiver, nil)
	wantCode(t, err, mdmd.EInvalid)
	_, err = s.SetSSFStreamStatus(ctx, "b", a2.ID, mdmd.SSFStatusPaused, "", mdmd.SSFStatusByReceiver, nil)
	wantCode(t, err, mdmd.ENotFound)
	ctl := ssfSets(a2.ID, 1, "ctl")[0]
	st, err := s.SetSSFStreamStatus(ctx, "a", a2.ID, mdmd.SSFStatusDisabled, "maintenance", mdmd.SSFStatusByReceiver, &ctl)
	must(t, err)
	if st.Status != mdmd.SSFStatusDisabled || st.StatusReason != "maintenance" {
		t.Fatalf("status = %+v", st)
	}
	sets, err := s.ListSSFSets(ctx, a2.ID, 10)
	must(t, err)
	if len(sets) != 1 || !sets[0].Control || sets[0].JTI != ctl.JTI {
		t.Fatalf("disabled stream holds %+v, want only the control SET", sets)
	}

	must(t, s.DeleteSSFStream(ctx, "a", a2.ID))
	wantCode(t, s.DeleteSSFStream(ctx, "a", a2.ID), mdmd.ENotFound)
	if sets, _ := s.ListSSFSets(ctx, a2.ID, 10); len(sets) != 0 {
		t.Fatalf("a deleted stream's SETs remain: %+v", sets)
	}
	must(t, s.CreateSSFStream(ctx, ssfStream("a", mdmd.SSFDeliveryPoll), 2))
}

func testSSFSubjects(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	sub := func(dev, user string) *mdmd.SSFSubject {
		return &mdmd.SSFSubject{StreamID: st.ID, DeviceKey: dev, UserKey: user, Subject: mdmd.RawJSON(`{"format":"opaque","id":"x"}`)}
	}
	wantCode(t, s.AddSSFSubject(ctx, "a", sub("", ""), 0), mdmd.EInvalid)
	wantCode(t, s.AddSSFSubject(ctx, "b", sub("d1", ""), 0), mdmd.ENotFound)
	must(t, s.AddSSFSubject(ctx, "a", sub("d1", ""), 0))
	must(t, s.AddSSFSubject(ctx, "a", sub("d1", ""), 0)) // idempotent
	must(t, s.AddSSFSubject(ctx, "a", sub("", "ada@example.com"), 0))
	must(t, s.AddSSFSubject(ctx, "a", sub("d9", "bob@example.com"), 0))
	rows, err := s.ListSSFSubjects(ctx, st.ID)
	must(t, err)
	if len(rows) != 3 {
		t.Fatalf("subjects = %+v", rows)
	}
	m, err := s.MatchSSFSubjects(ctx, []string{st.ID}, []string{"d1", "d2"}, []string{"ada@example.com"})
	must(t, err)
	if len(m) != 2 {
		t.Fatalf("matched %+v, want the d1 and ada rows", m)
	}
	must(t, s.RemoveSSFSubject(ctx, "a", sub("d1", ""), 0))
	must(t, s.RemoveSSFSubject(ctx, "a", sub("d1", ""), 0)) // removing twice is fine
	rows, _ = s.ListSSFSubjects(ctx, st.ID)
	if len(rows) != 2 {
		t.Fatalf("after remove: %+v", rows)
	}

	// On an all-subjects stream, remove excludes and add re-includes;
	// switching the mode clears the rows.
	st.AllSubjects = true
	must(t, s.UpdateSSFStream(ctx, st, true))
	if rows, _ := s.ListSSFSubjects(ctx, st.ID); len(rows) != 0 {
		t.Fatalf("mode change kept %+v", rows)
	}
	must(t, s.RemoveSSFSubject(ctx, "a", sub("d2", ""), 0))
	rows, _ = s.ListSSFSubjects(ctx, st.ID)
	if len(rows) != 1 || rows[0].DeviceKey != "d2" {
		t.Fatalf("exclusions = %+v", rows)
	}
	must(t, s.AddSSFSubject(ctx, "a", sub("d2", ""), 0))
	if rows, _ := s.ListSSFSubjects(ctx, st.ID); len(rows) != 0 {
		t.Fatalf("re-added subject still excluded: %+v", rows)
	}
	fan, err := s.SSFFanoutStreams(ctx)
	must(t, err)
	if len(fan) != 1 {
		t.Fatalf("fan-out streams = %d", len(fan))
	}
	_, err = s.SetSSFStreamStatus(ctx, "a", st.ID, mdmd.SSFStatusDisabled, "", mdmd.SSFStatusByReceiver, nil)
	must(t, err)
	if fan, _ := s.SSFFanoutStreams(ctx); len(fan) != 0 {
		t.Fatalf("a disabled stream takes events")
	}
}

func testSSFPushQueue(t *testing.T, s *storage.Store) {
	_, err := s.ClaimSSFPush(ctx, "", time.Minute, 1, 1)
	wantCode(t, err, mdmd.EInvalid)
	st := ssfStream("a", mdmd.SSFDeliveryPush)
	must(t, s.CreateSSFStream(ctx, st, 0))
	poll := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, poll, 0))
	must(t, s.EnqueueSSFSets(ctx, ssfSets(poll.ID, 2, "p")))
	wantCode(t, s.EnqueueSSFSets(ctx, []mdmd.SSFSet{{JTI: "x", StreamID: st.ID, EventType: "e", Claims: mdmd.RawJSON(`{`)}}), mdmd.EInvalid)

	if got, _ := s.ClaimSSFPush(ctx, "w0", time.Minute, 5, 5); len(got) != 0 {
		t.Fatalf("claimed %+v with nothing to push", got)
	}
	must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, 5, "q")))
	got, err := s.ClaimSSFPush(ctx, "w1", time.Minute, 5, 3)
	must(t, err)
	if len(got) != 1 || got[0].Stream.ID != st.ID || len(got[0].Sets) != 3 || got[0].Sets[0].JTI != "q-"+st.ID+"-000" {
		t.Fatalf("claim = %+v, want the push stream's 3 oldest SETs", got)
	}
	if again, _ := s.ClaimSSFPush(ctx, "w2", time.Minute, 5, 3); len(again) != 0 {
		t.Fatal("a leased stream was claimed twice")
	}
	b := got[0].Sets
	retryAt := time.Now().Add(-time.Millisecond)
	must(t, s.FinishSSFPush(ctx, "w1", st.ID, storage.SSFPushResult{Delivered: []int64{b[0].ID}, Failed: map[int64]string{b[1].ID: "invalid_key: no"},
		Retry: []int64{b[2].ID}, RetryAt: &retryAt, Error: "HTTP 503"}))
	cur, _ := s.GetSSFStream(ctx, "", st.ID)
	if cur.PushFailures != 1 || cur.PushLastError != "HTTP 503" || cur.PushLeaseOwner != "" {
		t.Fatalf("stream after a failed push = %+v", cur)
	}
	got, err = s.ClaimSSFPush(ctx, "w3", time.Minute, 5, 10)
	must(t, err)
	if len(got) != 1 || len(got[0].Sets) != 3 || got[0].Sets[0].ID != b[2].ID || got[0].Sets[0].Attempts != 1 {
		t.Fatalf("retry claim = %+v, want the retried SET first, then the rest", got)
	}
	var ids []int64
	for _, x := range got[0].Sets {
		ids = append(ids, x.ID)
	}
	// A claimer whose lease was taken over still records deliveries, but
	// does not touch the stream's schedule.
	later := time.Now().Add(time.Hour)
	must(t, s.FinishSSFPush(ctx, "someone-else", st.ID, storage.SSFPushResult{Delivered: ids[:1], RetryAt: &later}))
	cur, _ = s.GetSSFStream(ctx, "", st.ID)
	if cur.PushLeaseOwner != "w3" || cur.PushNextAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("a stale claimer changed the stream: %+v", cur)
	}
	must(t, s.FinishSSFPush(ctx, "w3", st.ID, storage.SSFPushResult{Delivered: ids[1:]}))
	cur, _ = s.GetSSFStream(ctx, "", st.ID)
	if cur.PushFailures != 0 {
		t.Fatalf("a delivery did not reset the failures: %+v", cur)
	}
	counts, _ := s.CountSSFSets(ctx, st.ID)
	if counts[mdmd.SETDelivered] != 4 || counts[mdmd.SETFailed] != 1 || counts[mdmd.SETPending] != 0 {
		t.Fatalf("counts = %v", counts)
	}
	sets, _ := s.ListSSFSets(ctx, st.ID, 10)
	if sets[1].LastError != "invalid_key: no" || sets[1].DoneAt == nil {
		t.Fatalf("failed SET = %+v", sets[1])
	}

	// Paused: only control SETs go out; enabling releases the rest.
	_, err = s.SetSSFStreamStatus(ctx, "a", st.ID, mdmd.SSFStatusPaused, "", mdmd.SSFStatusByReceiver, nil)
	must(t, err)
	must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, 2, "held")))
	if got, _ := s.ClaimSSFPush(ctx, "w4", time.Minute, 5, 10); len(got) != 0 {
		t.Fatalf("a paused stream was claimed: %+v", got)
	}
	ctl := ssfSets(st.ID, 1, "updated")[0]
	_, err = s.SetSSFStreamStatus(ctx, "", st.ID, mdmd.SSFStatusPaused, "by admin", mdmd.SSFStatusByAdmin, &ctl)
	must(t, err)
	got, err = s.ClaimSSFPush(ctx, "w4", time.Minute, 5, 10)
	must(t, err)
	if len(got) != 1 || len(got[0].Sets) != 1 || !got[0].Sets[0].Control {
		t.Fatalf("paused claim = %+v, want the control SET alone", got)
	}
	must(t, s.FinishSSFPush(ctx, "w4", st.ID, storage.SSFPushResult{Delivered: []int64{got[0].Sets[0].ID}}))
	_, err = s.SetSSFStreamStatus(ctx, "", st.ID, mdmd.SSFStatusEnabled, "", mdmd.SSFStatusByAdmin, nil)
	must(t, err)
	got, err = s.ClaimSSFPush(ctx, "w5", 10*time.Millisecond, 5, 10)
	must(t, err)
	if len(got) != 1 || len(got[0].Sets) != 2 {
		t.Fatalf("enabled claim = %+v, want the 2 held SETs", got)
	}
	// A lease that runs out lets another replica take the stream over.
	time.Sleep(30 * time.Millisecond)
	got, err = s.ClaimSSFPush(ctx, "w6", time.Minute, 5, 10)
	must(t, err)
	if len(got) != 1 || len(got[0].Sets) != 2 || got[0].Stream.PushLeaseOwner != "w6" {
		t.Fatalf("expired lease not taken over: %+v", got)
	}
}

func testSSFPushConcurrentClaims(t *testing.T, s *storage.Store) {
	const streams, perStream, workers = 12, 10, 4
	for i := range streams {
		st := ssfStream(fmt.Sprintf("o%d", i), mdmd.SSFDeliveryPush)
		must(t, s.CreateSSFStream(ctx, st, 0))
		must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, perStream, "c")))
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				owner := fmt.Sprintf("w%d-%d", w, round)
				got, err := s.ClaimSSFPush(ctx, owner, time.Minute, 2, 4)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, b := range got {
					var ids []int64
					mu.Lock()
					for _, x := range b.Sets {
						seen[x.ID]++
						ids = append(ids, x.ID)
					}
					mu.Unlock()
					if err := s.FinishSSFPush(ctx, owner, b.Stream.ID, storage.SSFPushResult{Delivered: ids}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != streams*perStream {
		t.Fatalf("%d distinct SETs pushed, want %d", len(seen), streams*perStream)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("SET %d claimed %d times", id, n)
		}
	}
}

func testSSFPollQueue(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	_, _, err := s.PollSSFSets(ctx, "missing", nil, nil, 5, time.Minute)
	wantCode(t, err, mdmd.ENotFound)
	must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, 5, "p")))

	got, more, err := s.PollSSFSets(ctx, st.ID, nil, nil, 2, 20*time.Millisecond)
	must(t, err)
	if len(got) != 2 || !more || got[0].JTI != "p-"+st.ID+"-000" || got[1].JTI != "p-"+st.ID+"-001" || got[0].State != mdmd.SETOutstanding {
		t.Fatalf("first poll = %+v more=%v", got, more)
	}
	// Acknowledge one, report the other bad, take the rest.
	got2, more, err := s.PollSSFSets(ctx, st.ID, []string{got[0].JTI, "unknown-jti"}, map[string]string{got[1].JTI: "invalid_key: x"}, 10, 20*time.Millisecond)
	must(t, err)
	if len(got2) != 3 || more {
		t.Fatalf("second poll = %d SETs, more=%v", len(got2), more)
	}
	// Not acknowledged in time: returned again.
	time.Sleep(40 * time.Millisecond)
	got3, _, err := s.PollSSFSets(ctx, st.ID, []string{got2[0].JTI}, nil, 10, time.Minute)
	must(t, err)
	if len(got3) != 2 || got3[0].JTI != got2[1].JTI || got3[0].Attempts != 2 {
		t.Fatalf("redelivery = %+v, want the two unacknowledged SETs", got3)
	}
	// maxEvents 0 only acknowledges.
	got4, more, err := s.PollSSFSets(ctx, st.ID, []string{got3[0].JTI, got3[1].JTI}, nil, 0, time.Minute)
	must(t, err)
	if len(got4) != 0 || more {
		t.Fatalf("ack-only poll = %+v", got4)
	}
	counts, _ := s.CountSSFSets(ctx, st.ID)
	if counts[mdmd.SETDelivered] != 4 || counts[mdmd.SETFailed] != 1 {
		t.Fatalf("counts = %v", counts)
	}
	// Another stream's jti cannot be acknowledged through this one.
	other := ssfStream("b", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, other, 0))
	must(t, s.EnqueueSSFSets(ctx, ssfSets(other.ID, 1, "o")))
	_, _, err = s.PollSSFSets(ctx, st.ID, []string{"o-" + other.ID + "-000"}, nil, 0, time.Minute)
	must(t, err)
	if c, _ := s.CountSSFSets(ctx, other.ID); c[mdmd.SETPending] != 1 {
		t.Fatalf("another stream's SET was acknowledged: %v", c)
	}
	// A paused stream hands out nothing but control SETs.
	_, err = s.SetSSFStreamStatus(ctx, "b", other.ID, mdmd.SSFStatusPaused, "", mdmd.SSFStatusByReceiver, nil)
	must(t, err)
	if got, more, _ := s.PollSSFSets(ctx, other.ID, nil, nil, 10, time.Minute); len(got) != 0 || more {
		t.Fatalf("a paused stream returned %+v more=%v", got, more)
	}
}

func testSSFPollConcurrent(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	const n = 60
	must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, n, "c")))
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acks []string
			for {
				got, _, err := s.PollSSFSets(ctx, st.ID, acks, nil, 7, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				acks = acks[:0]
				mu.Lock()
				for _, x := range got {
					seen[x.JTI]++
					acks = append(acks, x.JTI)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct SETs polled, want %d", len(seen), n)
	}
	for jti, c := range seen {
		if c != 1 {
			t.Errorf("SET %s handed out %d times", jti, c)
		}
	}
}

func testSSFVerificationAndPrune(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	v := func(i int) *mdmd.SSFSet {
		return &mdmd.SSFSet{JTI: fmt.Sprintf("v%d", i), EventType: "verification", SubjectKey: st.ID, Claims: mdmd.RawJSON(`{}`)}
	}
	wantCode(t, s.RequestSSFVerification(ctx, "b", st.ID, time.Hour, v(0)), mdmd.ENotFound)
	// Concurrent requests: exactly one passes the interval.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.RequestSSFVerification(ctx, "a", st.ID, time.Hour, v(i+1))
			mu.Lock()
			defer mu.Unlock()
			switch mdmd.ErrorCode(err) {
			case "":
				ok++
			case mdmd.ERateLimited:
				limited++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || limited != 4 {
		t.Fatalf("verifications: %d passed, %d limited; want 1 and 4", ok, limited)
	}
	time.Sleep(5 * time.Millisecond)
	must(t, s.RequestSSFVerification(ctx, "a", st.ID, time.Millisecond, v(9)))

	got, _, err := s.PollSSFSets(ctx, st.ID, nil, nil, 1, time.Minute)
	must(t, err)
	must(t, func() error {
		_, _, err := s.PollSSFSets(ctx, st.ID, []string{got[0].JTI}, nil, 0, time.Minute)
		return err
	}())
	deleted, expired, err := s.PruneSSFSets(ctx, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	must(t, err)
	if deleted != 2 || expired != 1 {
		t.Fatalf("prune deleted %d, expired %d; want 2 (the delivered one and the expired one) and 1", deleted, expired)
	}
	if sets, _ := s.ListSSFSets(ctx, st.ID, 10); len(sets) != 0 {
		t.Fatalf("left %+v", sets)
	}
}

func testSigningKeys(t *testing.T, s *storage.Store) {
	key := func(gen int64, kid string) *mdmd.SigningKey {
		return &mdmd.SigningKey{Ring: "r", Generation: gen, KID: kid, Alg: "RS256", PublicJWK: mdmd.RawJSON(`{"kid":"` + kid + `"}`),
			KeySealed: []byte("sealed-" + kid)}
	}
	_, _, err := s.CreateSigningKey(ctx, &mdmd.SigningKey{Ring: "r", Generation: 1})
	wantCode(t, err, mdmd.EInvalid)
	// Replicas bootstrapping at once: one key, and everyone gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, kids := 0, map[string]bool{}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, c, err := s.CreateSigningKey(ctx, key(1, fmt.Sprintf("k%d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if c {
				created++
			}
			kids[k.KID] = true
		}()
	}
	wg.Wait()
	if created != 1 || len(kids) != 1 {
		t.Fatalf("bootstrap created %d keys, callers saw %d; want 1 and 1", created, len(kids))
	}
	next := key(2, "k-next")
	next.ActiveFrom = time.Now().Add(time.Hour)
	k2, c, err := s.CreateSigningKey(ctx, next)
	must(t, err)
	if !c || !k2.ActiveFrom.After(time.Now()) || k2.CreatedAt.IsZero() {
		t.Fatalf("rotated key = %+v created=%v", k2, c)
	}
	_, _, err = s.CreateSigningKey(ctx, &mdmd.SigningKey{Ring: "other", Generation: 1, KID: "k-next", Alg: "RS256",
		PublicJWK: mdmd.RawJSON(`{}`), KeySealed: []byte{1}})
	wantCode(t, err, mdmd.EConflict)
	keys, err := s.ListSigningKeys(ctx, "r")
	must(t, err)
	if len(keys) != 2 || keys[0].Generation != 1 || keys[1].KID != "k-next" || string(keys[1].KeySealed) != "sealed-k-next" {
		t.Fatalf("keys = %+v", keys)
	}
	var jwk map[string]string
	must(t, json.Unmarshal(keys[1].PublicJWK, &jwk))
	must(t, s.DeleteSigningKey(ctx, "r", keys[0].KID))
	must(t, s.DeleteSigningKey(ctx, "r", "missing"))
	if keys, _ := s.ListSigningKeys(ctx, "r"); len(keys) != 1 {
		t.Fatalf("after delete: %+v", keys)
	}
	if keys, _ := s.ListSigningKeys(ctx, "other"); len(keys) != 0 {
		t.Fatalf("rings leak: %+v", keys)
	}
}

// An administrator's pause or disable holds against the receiver; the
// administrator's enable hands the status back.
func testSSFStatusBy(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPush)
	must(t, s.CreateSSFStream(ctx, st, 0))
	if st.StatusBy != mdmd.SSFStatusByReceiver {
		t.Fatalf("new stream status_by = %q", st.StatusBy)
	}
	set := func(owner, status, by string) (*mdmd.SSFStream, error) {
		return s.SetSSFStreamStatus(ctx, owner, st.ID, status, "why", by, nil)
	}
	_, err := set("a", mdmd.SSFStatusPaused, "someone")
	wantCode(t, err, mdmd.EInvalid)
	// The receiver pauses and resumes its own stream.
	_, err = set("a", mdmd.SSFStatusPaused, mdmd.SSFStatusByReceiver)
	must(t, err)
	got, err := set("a", mdmd.SSFStatusEnabled, mdmd.SSFStatusByReceiver)
	must(t, err)
	if got.Status != mdmd.SSFStatusEnabled || got.StatusBy != mdmd.SSFStatusByReceiver {
		t.Fatalf("after the receiver's enable: %+v", got)
	}
	for _, held := range []string{mdmd.SSFStatusPaused, mdmd.SSFStatusDisabled} {
		got, err = set("", held, mdmd.SSFStatusByAdmin)
		must(t, err)
		if got.Status != held || got.StatusBy != mdmd.SSFStatusByAdmin {
			t.Fatalf("after the administrator's %s: %+v", held, got)
		}
		for _, try := range mdmd.SSFStatuses {
			_, err = set("a", try, mdmd.SSFStatusByReceiver)
			wantCode(t, err, mdmd.EForbidden)
		}
		if cur, _ := s.GetSSFStream(ctx, "a", st.ID); cur.Status != held || cur.StatusBy != mdmd.SSFStatusByAdmin {
			t.Fatalf("a refused change changed the stream: %+v", cur)
		}
	}
	// Administrators change it freely; their enable frees the receiver.
	_, err = set("", mdmd.SSFStatusPaused, mdmd.SSFStatusByAdmin)
	must(t, err)
	_, err = set("", mdmd.SSFStatusEnabled, mdmd.SSFStatusByAdmin)
	must(t, err)
	got, err = set("a", mdmd.SSFStatusPaused, mdmd.SSFStatusByReceiver)
	must(t, err)
	if got.Status != mdmd.SSFStatusPaused || got.StatusBy != mdmd.SSFStatusByReceiver {
		t.Fatalf("after the administrator's enable, the receiver's pause: %+v", got)
	}
	// A configuration update keeps who set the status.
	_, err = set("", mdmd.SSFStatusDisabled, mdmd.SSFStatusByAdmin)
	must(t, err)
	upd, _ := s.GetSSFStream(ctx, "a", st.ID)
	upd.Description = "changed"
	must(t, s.UpdateSSFStream(ctx, upd, false))
	if upd.StatusBy != mdmd.SSFStatusByAdmin || upd.Status != mdmd.SSFStatusDisabled {
		t.Fatalf("after an update: %+v", upd)
	}
}

// The streams of a revoked or expired receiver token take no events and
// are not pushed; streams owned by a principal that is no token are.
func testSSFDeadOwners(t *testing.T, s *storage.Store) {
	token := func(i int, expires time.Time) string {
		tok := &mdmd.APIToken{Name: fmt.Sprintf("rx-%d", i), Role: mdmd.RoleSSFReceiver, Hash: fmt.Sprintf("%064x", i),
			Prefix: "mdmd_x", ExpiresAt: expires}
		must(t, s.CreateAPIToken(ctx, tok))
		return tok.ID
	}
	live := token(1, time.Now().Add(time.Hour))
	revoked := token(2, time.Now().Add(time.Hour))
	_, err := s.RevokeAPIToken(ctx, revoked)
	must(t, err)
	expired := token(3, time.Now().Add(-time.Minute))
	owners := map[string]string{"live": live, "revoked": revoked, "expired": expired, "not a token": "console-user"}
	streams := map[string]string{}
	for name, owner := range owners {
		st := ssfStream(owner, mdmd.SSFDeliveryPush)
		must(t, s.CreateSSFStream(ctx, st, 0))
		must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, 2, "dead")))
		streams[st.ID] = name
	}
	fan, err := s.SSFFanoutStreams(ctx)
	must(t, err)
	var names []string
	for _, st := range fan {
		names = append(names, streams[st.ID])
	}
	if len(fan) != 2 || !containsAll(names, "live", "not a token") {
		t.Fatalf("fan-out streams = %v, want the live token's and the non-token owner's", names)
	}
	got, err := s.ClaimSSFPush(ctx, "w", time.Minute, 10, 10)
	must(t, err)
	names = nil
	for _, b := range got {
		names = append(names, streams[b.Stream.ID])
	}
	if len(got) != 2 || !containsAll(names, "live", "not a token") {
		t.Fatalf("claimed %v, want the live token's and the non-token owner's streams", names)
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// A stream disabled while a fan-out that took it is under way ends up
// with no SET queued: the disable waits for the fan-out and drops what it
// queued (PostgreSQL: FOR SHARE; SQLite: one writer at a time).
func testSSFFanoutDisableRace(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPush)
	must(t, s.CreateSSFStream(ctx, st, 0))
	must(t, s.AppendEvent(ctx, mdmd.EventComplianceChanged, "dev-1", map[string]int{"i": 1}))
	done := make(chan error, 1)
	waited := false
	n, err := s.ConsumeEvents(ctx, "ssf-race", 10, func(tx *storage.Store, evs []mdmd.Event) error {
		streams, err := tx.SSFFanoutStreams(ctx)
		if err != nil || len(streams) != 1 {
			return fmt.Errorf("fan-out streams %d: %v", len(streams), err)
		}
		go func() {
			_, err := s.SetSSFStreamStatus(ctx, "a", st.ID, mdmd.SSFStatusDisabled, "", mdmd.SSFStatusByReceiver, nil)
			done <- err
		}()
		select {
		case err := <-done: // the disable did not wait for this fan-out
			if err != nil {
				return err
			}
		case <-time.After(300 * time.Millisecond):
			waited = true
		}
		return tx.EnqueueSSFSets(ctx, ssfSets(st.ID, 2, "race"))
	})
	must(t, err)
	if n != 1 {
		t.Fatalf("consumed %d events", n)
	}
	if waited {
		must(t, <-done)
	}
	cur, _ := s.GetSSFStream(ctx, "a", st.ID)
	counts, _ := s.CountSSFSets(ctx, st.ID)
	if cur.Status != mdmd.SSFStatusDisabled || counts[mdmd.SETPending] != 0 {
		t.Fatalf("a disabled stream holds %v (status %s)", counts, cur.Status)
	}
}

// A stream has at most maxRows subject rows; exclusions count too.
func testSSFSubjectLimit(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	sub := func(dev string) *mdmd.SSFSubject {
		return &mdmd.SSFSubject{StreamID: st.ID, DeviceKey: dev, Subject: mdmd.RawJSON(`{"format":"opaque","id":"x"}`)}
	}
	must(t, s.AddSSFSubject(ctx, "a", sub("d1"), 2))
	must(t, s.AddSSFSubject(ctx, "a", sub("d2"), 2))
	wantCode(t, s.AddSSFSubject(ctx, "a", sub("d3"), 2), mdmd.EConflict)
	must(t, s.AddSSFSubject(ctx, "a", sub("d2"), 2)) // already there: no new row
	must(t, s.RemoveSSFSubject(ctx, "a", sub("d1"), 2))
	must(t, s.AddSSFSubject(ctx, "a", sub("d3"), 2))
	// Concurrent adds cannot pass the limit together.
	other := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, other, 0))
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.AddSSFSubject(ctx, "a", &mdmd.SSFSubject{StreamID: other.ID, DeviceKey: fmt.Sprintf("c%d", i),
				Subject: mdmd.RawJSON(`{}`)}, 3)
			if err != nil && !mdmd.IsCode(err, mdmd.EConflict) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if rows, _ := s.ListSSFSubjects(ctx, other.ID); len(rows) != 3 {
		t.Fatalf("concurrent adds left %d subjects, want 3", len(rows))
	}
	// On an all-subjects stream the rows are exclusions, under the same limit.
	st.AllSubjects = true
	must(t, s.UpdateSSFStream(ctx, st, true))
	must(t, s.RemoveSSFSubject(ctx, "a", sub("x1"), 2))
	must(t, s.RemoveSSFSubject(ctx, "a", sub("x2"), 2))
	wantCode(t, s.RemoveSSFSubject(ctx, "a", sub("x3"), 2), mdmd.EConflict)
	must(t, s.AddSSFSubject(ctx, "a", sub("x1"), 2)) // re-including always works
	must(t, s.RemoveSSFSubject(ctx, "a", sub("x3"), 2))
}

// Many setErrs are recorded each with its own message, in batches.
func testSSFPollErrorsBatched(t *testing.T, s *storage.Store) {
	st := ssfStream("a", mdmd.SSFDeliveryPoll)
	must(t, s.CreateSSFStream(ctx, st, 0))
	const n = 1100 // more than one chunk
	must(t, s.EnqueueSSFSets(ctx, ssfSets(st.ID, n, "e")))
	sets, _, err := s.PollSSFSets(ctx, st.ID, nil, nil, n, time.Minute)
	must(t, err)
	if len(sets) != n {
		t.Fatalf("polled %d", len(sets))
	}
	errs := map[string]string{}
	for i, x := range sets[:n-1] {
		errs[x.JTI] = fmt.Sprintf("invalid_key: SET %d é", i)
	}
	errs[sets[0].JTI] = "invalid_request: " + strings.Repeat("é", 400) // cut at 500 bytes, not inside a character
	_, _, err = s.PollSSFSets(ctx, st.ID, nil, errs, 0, time.Minute)
	must(t, err)
	counts, _ := s.CountSSFSets(ctx, st.ID)
	if counts[mdmd.SETFailed] != n-1 || counts[mdmd.SETOutstanding] != 1 {
		t.Fatalf("counts = %v", counts)
	}
	got, err := s.ListSSFSets(ctx, st.ID, mdmd.MaxPageSize) // past the first chunk
	must(t, err)
	if len(got) <= 500 {
		t.Fatalf("listed %d SETs", len(got))
	}
	for i, x := range got[1:] {
		if want := fmt.Sprintf("invalid_key: SET %d é", i+1); x.LastError != want || x.State != mdmd.SETFailed || x.DoneAt == nil {
			t.Fatalf("SET %d: %q %s, want %q", i+1, x.LastError, x.State, want)
		}
	}
	if e := got[0].LastError; len(e) > 500 || !strings.HasPrefix(e, "invalid_request: éé") || !utf8Valid(e) {
		t.Fatalf("long message stored as %d bytes %q", len(e), e)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
