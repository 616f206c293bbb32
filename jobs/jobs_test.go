package jobs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

func TestRunner(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			st := storagetest.Open(t, b.URL, storage.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := jobs.New(st, jobs.Options{Poll: 10 * time.Millisecond, Concurrency: 2, Lease: time.Minute, Registerer: prometheus.NewRegistry()})
			var mu sync.Mutex
			ran := map[string]int{}
			var flaky, panics atomic.Int32
			r.Register("ok", func(ctx context.Context, j *mdmd.Job) error {
				mu.Lock()
				ran[string(j.Payload)]++
				mu.Unlock()
				return nil
			})
			r.Register("flaky", func(ctx context.Context, j *mdmd.Job) error {
				if flaky.Add(1) == 1 {
					return errors.New("transient")
				}
				return nil
			})
			r.Register("panics", func(ctx context.Context, j *mdmd.Job) error {
				panics.Add(1)
				panic("boom")
			})
			r.Every("tick", time.Hour)
			var ticks atomic.Int32
			r.Register("tick", func(ctx context.Context, j *mdmd.Job) error { ticks.Add(1); return nil })
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()

			for _, p := range []string{"a", "b", "c", "d", "e"} {
				if _, err := r.Enqueue(ctx, &mdmd.Job{Kind: "ok", Payload: []byte(p)}); err != nil {
					t.Fatal(err)
				}
			}
			flakyJob := &mdmd.Job{Kind: "flaky", MaxAttempts: 3}
			r.Enqueue(ctx, flakyJob)
			panicJob := &mdmd.Job{Kind: "panics", MaxAttempts: 1}
			r.Enqueue(ctx, panicJob)

			wait(t, "ok jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == 5 })
			wait(t, "the panicking job to die", func() bool {
				j, _ := st.GetJob(ctx, panicJob.ID)
				return j.Status == mdmd.JobDead
			})
			j, _ := st.GetJob(ctx, panicJob.ID)
			if j.LastError == "" || panics.Load() != 1 {
				t.Fatalf("dead job = %+v, ran %d times", j, panics.Load())
			}
			// The flaky job failed once and waits for its backoff (about 2 s).
			wait(t, "the flaky job's retry to be scheduled", func() bool {
				j, _ := st.GetJob(ctx, flakyJob.ID)
				return j.Status == mdmd.JobQueued && j.LastError == "transient"
			})
			j, _ = st.GetJob(ctx, flakyJob.ID)
			if d := time.Until(j.RunAt); d < time.Second || d > 3*time.Second {
				t.Fatalf("retry scheduled in %s, want about 2s", d)
			}
			wait(t, "the periodic job", func() bool { return ticks.Load() == 1 })
			cancel()
			<-done
			for p, n := range ran {
				if n != 1 {
					t.Fatalf("job %s ran %d times", p, n)
				}
			}
		})
	}
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 1600 * time.Millisecond, 2400 * time.Millisecond},
		{2, 3200 * time.Millisecond, 4800 * time.Millisecond},
		{5, 25600 * time.Millisecond, 38400 * time.Millisecond},
		{40, 24 * time.Minute, 36 * time.Minute},
	}
	for _, tc := range tests {
		for i := 0; i < 50; i++ {
			if d := jobs.Backoff(tc.attempt); d < tc.min || d > tc.max {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}
