// Package jobs runs mdmd's durable background work. Jobs live in the
// database; every replica runs a Runner that claims due jobs under a lease,
// so each job is done by one replica at a time, a job whose replica died is
// taken over when its lease ends, and periodic work is scheduled into
// idempotent slots that all replicas may propose.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdmd/mdmd"
)

// Store is what the runner needs from storage.
type Store interface {
	EnqueueJob(ctx context.Context, j *mdmd.Job) (bool, error)
	ClaimJobs(ctx context.Context, owner string, kinds []string, n int, lease time.Duration) ([]mdmd.Job, error)
	CompleteJob(ctx context.Context, id, owner string) error
	FailJob(ctx context.Context, id, owner, message string, retryAt time.Time) (*mdmd.Job, error)
}

// Handler does one job. Returning an error schedules a retry with backoff
// until the job's attempts are used up. A handler must finish within the
// lease or make its work idempotent: a job whose lease ran out may run again.
type Handler func(ctx context.Context, job *mdmd.Job) error

// Options configure a Runner.
type Options struct {
	// Replica names this process in leases and logs.
	Replica     string
	Concurrency int           // jobs run at once (default 4)
	Poll        time.Duration // how often to look for due jobs (default 1s)
	Lease       time.Duration // how long a claim lasts (default 5m)
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Runner claims and runs jobs.
type Runner struct {
	st       Store
	opt      Options
	log      *slog.Logger
	handlers map[string]Handler
	periodic []periodic
	wake     chan struct{}
	started  atomic.Bool
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

type periodic struct {
	kind  string
	every time.Duration
}

// New returns a Runner; register handlers before calling Run.
func New(st Store, opt Options) *Runner {
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	if opt.Lease <= 0 {
		opt.Lease = 5 * time.Minute
	}
	if opt.Replica == "" {
		opt.Replica = "replica-" + randHex(4)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{st: st, opt: opt, log: opt.Logger, handlers: map[string]Handler{}, wake: make(chan struct{}, 1),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdmd_jobs_runs_total", Help: "Background job attempts by kind and outcome.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mdmd_jobs_duration_seconds", Help: "Background job run time by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"kind"}),
	}
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(r.runs, r.duration)
	}
	return r
}

// Register sets the handler of a job kind. It must be called before Run.
func (r *Runner) Register(kind string, h Handler) {
	if r.started.Load() {
		panic("jobs: Register after Run")
	}
	r.handlers[kind] = h
}

// Every schedules a job of kind once per period, fleet-wide: each replica
// proposes the current slot under the same unique key and one job results.
func (r *Runner) Every(kind string, every time.Duration) {
	if r.started.Load() {
		panic("jobs: Every after Run")
	}
	r.periodic = append(r.periodic, periodic{kind: kind, every: every})
}

// Enqueue queues a job and wakes this runner.
func (r *Runner) Enqueue(ctx context.Context, j *mdmd.Job) (bool, error) {
	created, err := r.st.EnqueueJob(ctx, j)
	if err == nil {
		r.Wake()
	}
	return created, err
}

// Wake makes the runner look for due jobs now instead of at the next poll.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs jobs until ctx ends, then waits for running jobs.
func (r *Runner) Run(ctx context.Context) error {
	r.started.Store(true)
	kinds := make([]string, 0, len(r.handlers))
	for k := range r.handlers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, r.opt.Concurrency)
	ticker := time.NewTicker(r.opt.Poll)
	defer ticker.Stop()
	var lastSchedule time.Time
	for {
		if time.Since(lastSchedule) >= r.opt.Poll*10 || lastSchedule.IsZero() {
			r.schedule(ctx)
			lastSchedule = time.Now()
		}
		for {
			free := r.opt.Concurrency - len(sem)
			if free == 0 || ctx.Err() != nil {
				break
			}
			owner := r.opt.Replica + "/" + randHex(8)
			claimed, err := r.st.ClaimJobs(ctx, owner, kinds, free, r.opt.Lease)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("claiming jobs failed", "err", err)
				}
				break
			}
			for i := range claimed {
				j := claimed[i]
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					r.run(ctx, &j, owner)
				}()
			}
			if len(claimed) < free {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-r.wake:
		}
	}
}

func (r *Runner) schedule(ctx context.Context) {
	now := time.Now().UTC()
	for _, p := range r.periodic {
		slot := now.Truncate(p.every)
		key := fmt.Sprintf("%s@%s", p.kind, slot.Format(time.RFC3339))
		if _, err := r.st.EnqueueJob(ctx, &mdmd.Job{Kind: p.kind, UniqueKey: &key, RunAt: slot, MaxAttempts: 3}); err != nil && ctx.Err() == nil {
			r.log.Warn("scheduling periodic job failed", "kind", p.kind, "err", err)
		}
	}
}

func (r *Runner) run(ctx context.Context, j *mdmd.Job, owner string) {
	log := r.log.With("job", j.ID, "kind", j.Kind, "attempt", j.Attempts)
	// A job runs until its lease ends or the runner stops (shutdown
	// cancels it; an interrupted job is retried). Its outcome is recorded
	// under a fresh deadline, so that a job that used its whole lease or
	// was interrupted still records what happened.
	jctx, cancel := context.WithTimeout(ctx, r.opt.Lease)
	defer cancel()
	start := time.Now()
	err := r.safeRun(jctx, j)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	r.duration.WithLabelValues(j.Kind).Observe(time.Since(start).Seconds())
	if err == nil {
		r.runs.WithLabelValues(j.Kind, "done").Inc()
		if cerr := r.st.CompleteJob(rctx, j.ID, owner); cerr != nil {
			log.Warn("completing job failed", "err", cerr)
		}
		return
	}
	retryAt := time.Now().Add(Backoff(j.Attempts))
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.At.After(time.Now()) {
		retryAt = ra.At
	}
	failed, ferr := r.st.FailJob(rctx, j.ID, owner, err.Error(), retryAt)
	switch {
	case ferr != nil:
		r.runs.WithLabelValues(j.Kind, "error").Inc()
		log.Warn("recording job failure failed", "err", ferr, "job_err", err)
	case failed.Status == mdmd.JobDead:
		r.runs.WithLabelValues(j.Kind, "dead").Inc()
		log.Error("job failed for the last time", "err", err)
	default:
		r.runs.WithLabelValues(j.Kind, "retry").Inc()
		log.Warn("job failed, will retry", "err", err, "retry_at", retryAt)
	}
}

func (r *Runner) safeRun(ctx context.Context, j *mdmd.Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("job panicked: %v", p)
		}
	}()
	h := r.handlers[j.Kind]
	if h == nil {
		return errors.New("no handler for job kind " + j.Kind)
	}
	return h(ctx, j)
}

// RetryAfterError asks for the next attempt not before At (an upstream
// rate limit, for example).
type RetryAfterError struct {
	Err error
	At  time.Time
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that the job is retried at t.
func RetryAfter(err error, t time.Time) error { return &RetryAfterError{Err: err, At: t} }

// Backoff is the delay before retry n (1-based): exponential from 2 s,
// capped at 30 minutes, with ±20% jitter so retries do not synchronise.
func Backoff(attempt int) time.Duration {
	d := 2 * time.Second * time.Duration(math.Pow(2, float64(min(attempt, 20)-1)))
	if d > 30*time.Minute || d <= 0 {
		d = 30 * time.Minute
	}
	jitter := 0.8 + 0.4*mrand.Float64()
	return time.Duration(float64(d) * jitter)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
