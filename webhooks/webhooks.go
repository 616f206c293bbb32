// Package webhooks sends device events to subscribers (identity
// providers, SIEMs) as signed webhooks in the Standard Webhooks format.
//
// Delivery is durable and replica-safe; nothing in a process's memory is
// needed for correctness:
//
//   - Fan-out (FanoutJob) reads the device event log as the consumer
//     "webhooks" and, in the transaction that advances the consumer's
//     cursor, writes one delivery per event and enabled endpoint that
//     subscribes to the event's type, so each event is fanned out exactly
//     once however many replicas run the job.
//   - Delivery (DeliverJob) claims due deliveries under a lease (FOR
//     UPDATE SKIP LOCKED on PostgreSQL), POSTs them concurrently, and
//     records every attempt. A 2xx answer delivers; anything else is
//     retried with exponential backoff and jitter for about 24 hours
//     (DefaultMaxAttempts), then the delivery is failed. A receiver that
//     is down loses nothing meanwhile, and an administrator can redeliver
//     a failed delivery. Delivery is at least once: every attempt carries
//     the same webhook-id, by which receivers drop duplicates.
//   - A receiver that answers 410 Gone asks not to be sent anything more:
//     that delivery is failed and the endpoint disabled (with the reason
//     shown); its other pending deliveries wait, and go once an
//     administrator enables it again.
//   - The pending deliveries of a disabled endpoint (by an administrator
//     or after a 410) are held: out of the index that claims walk, so a
//     backlog of any size costs delivery nothing while it waits. Enabling
//     the endpoint releases them, each due at its own time again.
//
// Each request carries webhook-id, webhook-timestamp (unix seconds) and
// webhook-signature: "v1," and the base64 HMAC-SHA256, keyed by the
// secret's bytes, of "{webhook-id}.{webhook-timestamp}.{body}". For 24
// hours after a secret rotation the header holds a second, space-separated
// signature by the previous secret, so receivers can switch at leisure.
// Verify checks all of this on the receiving side. Redirects are not
// followed, and a receiver must answer within 10 seconds.
//
// The body is {"type": ..., "timestamp": RFC 3339, "data": ...}, where
// data is the event's data (mdmd.ComplianceChangedData and so on).
// Deliveries to one endpoint are not ordered; use timestamp and data.
package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
)

// Job kinds. The application runs FanoutJob and DeliverJob every few
// seconds and PruneJob daily; fan-out and the admin API also queue a
// DeliverJob at once when they create deliveries.
const (
	FanoutJob  = "webhooks.fanout"
	DeliverJob = "webhooks.deliver"
	PruneJob   = "webhooks.prune"
)

// Consumer is the name of the webhooks' cursor in the event log.
const Consumer = "webhooks"

// Defaults of Options.
const (
	DefaultMaxAttempts = 18 // about 24 hours of retries, see Backoff
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 8
	DefaultBatch       = 64
	DefaultRetain      = 30 * 24 * time.Hour
)

// PreviousSecretValidity is how long a rotated-out secret keeps signing.
const PreviousSecretValidity = 24 * time.Hour

const (
	fanoutBatch   = 500
	runBudget     = 2 * time.Minute // a job run stops taking new batches after this
	maxRetryAfter = 6 * time.Hour   // the most a receiver's Retry-After may delay a retry
)

// Enqueuer queues background jobs (the jobs.Runner).
type Enqueuer interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// Options configure a Service.
type Options struct {
	// Client sends the webhooks. It is copied, and the copy never follows
	// redirects. Default: a client with the default transport.
	Client *http.Client
	// Timeout bounds each attempt (DefaultTimeout).
	Timeout time.Duration
	// Concurrency bounds the requests in flight per job run (DefaultConcurrency).
	Concurrency int
	// Batch is how many deliveries one claim takes (DefaultBatch).
	Batch int
	// MaxAttempts is how many attempts a delivery gets before it fails
	// (DefaultMaxAttempts).
	MaxAttempts int
	// Retain is how long finished deliveries and attempts are kept (DefaultRetain).
	Retain time.Duration
	// Jobs, if set, gets a DeliverJob as soon as deliveries are queued.
	Jobs Enqueuer
	// Replica names this process in delivery leases.
	Replica string
	Logger  *slog.Logger
	// Now overrides the clock (tests); it should be the store's clock too.
	Now func() time.Time
}

// Service manages webhook endpoints and delivers their webhooks. It is
// also the admin API module (RegisterAPI).
type Service struct {
	st     *storage.Store
	box    *secret.Box
	client *http.Client
	opt    Options
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Service. box seals the endpoints' secrets.
func New(st *storage.Store, box *secret.Box, opt Options) *Service {
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = DefaultConcurrency
	}
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = DefaultMaxAttempts
	}
	if opt.Retain <= 0 {
		opt.Retain = DefaultRetain
	}
	if opt.Replica == "" {
		opt.Replica = "webhooks-" + randHex(4)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if opt.Client != nil {
		c := *opt.Client
		client = &c
	}
	// A redirect is an answer like any other non-2xx: it is not followed,
	// so a receiver cannot point signed device data elsewhere.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Service{st: st, box: box, client: client, opt: opt, log: opt.Logger, now: opt.Now}
}

// secretLabel binds a sealed secret to its endpoint's row.
func secretLabel(endpointID string) string { return "webhook_endpoints/" + endpointID + "/secret" }

func (s *Service) seal(endpointID, plain string) ([]byte, error) {
	sealed, err := s.box.Seal([]byte(plain), secretLabel(endpointID))
	if err != nil {
		return nil, fmt.Errorf("seal webhook secret: %w", err)
	}
	return sealed, nil
}

// CreateEndpoint stores a new endpoint with a new secret, and returns the
// secret: this is the only time it is shown.
func (s *Service) CreateEndpoint(ctx context.Context, e *mdmd.WebhookEndpoint) (string, error) {
	if err := e.Validate(); err != nil {
		return "", err
	}
	e.ID = uuid.Must(uuid.NewV7()).String()
	plain := NewSecret()
	sealed, err := s.seal(e.ID, plain)
	if err != nil {
		return "", err
	}
	e.SecretSealed = sealed
	if err := s.st.CreateWebhookEndpoint(ctx, e); err != nil {
		return "", err
	}
	return plain, nil
}

// RotateSecret gives an endpoint a new secret and returns it (shown only
// now). With keepPrevious the old secret goes on signing, beside the new
// one, for PreviousSecretValidity; without, it stops at once (a leak).
func (s *Service) RotateSecret(ctx context.Context, id string, keepPrevious bool) (*mdmd.WebhookEndpoint, string, error) {
	if _, err := s.st.GetWebhookEndpoint(ctx, id); err != nil {
		return nil, "", err
	}
	plain := NewSecret()
	sealed, err := s.seal(id, plain)
	if err != nil {
		return nil, "", err
	}
	var until *time.Time
	if keepPrevious {
		t := s.now().Add(PreviousSecretValidity)
		until = &t
	}
	e, err := s.st.RotateWebhookSecret(ctx, id, sealed, until)
	if err != nil {
		return nil, "", err
	}
	return e, plain, nil
}

// SendTest queues a ping (type webhook.test) to an enabled endpoint.
func (s *Service) SendTest(ctx context.Context, endpointID string) (*mdmd.WebhookDelivery, error) {
	e, err := s.st.GetWebhookEndpoint(ctx, endpointID)
	if err != nil {
		return nil, err
	}
	if !e.Enabled {
		return nil, mdmd.Errorf(mdmd.EConflict, "webhook endpoint %s is disabled; enable it first", endpointID)
	}
	data, _ := json.Marshal(map[string]string{"endpoint_id": e.ID, "endpoint_name": e.Name,
		"message": "A test delivery from mdmd: the signature can be checked with this endpoint's secret."})
	body, err := payload(mdmd.EventWebhookTest, s.now(), data)
	if err != nil {
		return nil, err
	}
	ds := []mdmd.WebhookDelivery{{EndpointID: e.ID, EventType: mdmd.EventWebhookTest, Payload: body}}
	if _, err := s.st.CreateWebhookDeliveries(ctx, ds); err != nil {
		return nil, err
	}
	s.kick(ctx)
	return s.st.GetWebhookDelivery(ctx, ds[0].ID)
}

// Redeliver queues a delivery again, due now, with a new round of
// attempts and the same webhook-id.
func (s *Service) Redeliver(ctx context.Context, endpointID, deliveryID string) (*mdmd.WebhookDelivery, error) {
	e, err := s.st.GetWebhookEndpoint(ctx, endpointID)
	if err != nil {
		return nil, err
	}
	if !e.Enabled {
		return nil, mdmd.Errorf(mdmd.EConflict, "webhook endpoint %s is disabled; enable it first", endpointID)
	}
	d, err := s.st.RedeliverWebhook(ctx, endpointID, deliveryID)
	if err != nil {
		return nil, err
	}
	s.kick(ctx)
	return d, nil
}

// kick queues a DeliverJob now (one per second at most), so that new
// deliveries do not wait for the periodic run.
func (s *Service) kick(ctx context.Context) {
	if s.opt.Jobs == nil {
		return
	}
	key := fmt.Sprintf("%s/now@%d", DeliverJob, time.Now().Unix())
	if _, err := s.opt.Jobs.Enqueue(ctx, &mdmd.Job{Kind: DeliverJob, UniqueKey: &key, MaxAttempts: 1}); err != nil {
		s.log.Warn("queueing webhook delivery failed; the periodic run will send", "err", err)
	}
}

// payload is the body of a webhook, in the Standard Webhooks shape.
func payload(typ string, at time.Time, data json.RawMessage) ([]byte, error) {
	if len(data) == 0 || !json.Valid(data) {
		data = json.RawMessage("null")
	}
	return json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{typ, at.UTC().Format(time.RFC3339Nano), data})
}

// RunFanout is the handler of FanoutJob.
func (s *Service) RunFanout(ctx context.Context, _ *mdmd.Job) error {
	_, err := s.Fanout(ctx)
	return err
}

// RunDeliver is the handler of DeliverJob.
func (s *Service) RunDeliver(ctx context.Context, _ *mdmd.Job) error {
	_, err := s.Deliver(ctx)
	return err
}

// RunPrune is the handler of PruneJob.
func (s *Service) RunPrune(ctx context.Context, _ *mdmd.Job) error {
	n, err := s.st.PruneWebhookDeliveries(ctx, s.now().Add(-s.opt.Retain))
	if n > 0 {
		s.log.Info("pruned webhook deliveries", "count", n)
	}
	return err
}

// Fanout turns the events not yet read into deliveries, and returns how
// many events it read. It may run on any number of replicas at once.
func (s *Service) Fanout(ctx context.Context) (int, error) {
	start := time.Now()
	total, created := 0, int64(0)
	for {
		var made int64
		n, err := s.st.ConsumeEvents(ctx, Consumer, fanoutBatch, func(tx *storage.Store, evs []mdmd.Event) error {
			eps, err := tx.ListWebhookEndpoints(ctx)
			if err != nil {
				return err
			}
			var ds []mdmd.WebhookDelivery
			for _, ev := range evs {
				var body []byte
				for i := range eps {
					if !eps[i].Enabled || !eps[i].Wants(ev.Type) {
						continue
					}
					if body == nil {
						if body, err = payload(ev.Type, ev.At, json.RawMessage(ev.Data)); err != nil {
							return err
						}
					}
					ds = append(ds, mdmd.WebhookDelivery{EndpointID: eps[i].ID, EventSeq: ev.Seq, EventType: ev.Type, Payload: body})
				}
			}
			made, err = tx.CreateWebhookDeliveries(ctx, ds)
			return err
		})
		if err != nil {
			return total, err
		}
		total, created = total+n, created+made
		if n < fanoutBatch || time.Since(start) > runBudget {
			break
		}
	}
	if created > 0 {
		s.log.Debug("webhook fan-out", "events", total, "deliveries", created)
		s.kick(ctx)
	}
	return total, nil
}

// Deliver sends the deliveries that are due and returns how many
// attempts it recorded. It may run on any number of replicas at once.
func (s *Service) Deliver(ctx context.Context) (int, error) {
	start := time.Now()
	// The lease covers a whole batch, every request taking its full timeout.
	rounds := (s.opt.Batch + s.opt.Concurrency - 1) / s.opt.Concurrency
	lease := time.Duration(rounds)*s.opt.Timeout + 30*time.Second
	total := 0
	for ctx.Err() == nil && time.Since(start) < runBudget {
		owner := s.opt.Replica + "/" + randHex(8)
		ds, err := s.st.ClaimWebhookDeliveries(ctx, owner, s.opt.Batch, lease)
		if err != nil {
			return total, err
		}
		total += s.deliverBatch(ctx, owner, ds)
		if len(ds) < s.opt.Batch {
			break
		}
	}
	return total, nil
}

// target is an endpoint ready to send to.
type target struct {
	url     string
	secrets []string // the current secret, then the previous one while it is valid
	err     error    // why the endpoint cannot be sent to (its secret does not open)
	gone    bool     // deleted since the claim: its deliveries went with it
}

// target looks an endpoint up; an error is the database's.
func (s *Service) target(ctx context.Context, id string, now time.Time) (*target, error) {
	e, err := s.st.GetWebhookEndpoint(ctx, id)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return &target{gone: true}, nil
	}
	if err != nil {
		return nil, err
	}
	t := &target{url: e.URL}
	cur, err := s.box.Open(e.SecretSealed, secretLabel(e.ID))
	if err != nil {
		t.err = errors.New("the endpoint's secret cannot be opened (wrong MDMD_SECRET_KEY?)")
		return t, nil
	}
	t.secrets = append(t.secrets, string(cur))
	if len(e.PreviousSecretSealed) > 0 && e.PreviousSecretUntil != nil && now.Before(*e.PreviousSecretUntil) {
		if prev, err := s.box.Open(e.PreviousSecretSealed, secretLabel(e.ID)); err == nil {
			t.secrets = append(t.secrets, string(prev))
		}
	}
	return t, nil
}

// deliverBatch sends a claimed batch. Once an endpoint looks down (no
// answer, 429 or 5xx), its other deliveries in the batch are not sent but
// logged as failed attempts and retried later, so that one dead receiver
// cannot hold a batch for a timeout per delivery.
func (s *Service) deliverBatch(ctx context.Context, owner string, ds []mdmd.WebhookDelivery) int {
	now := s.now()
	targets := map[string]*target{}
	for _, d := range ds {
		if _, seen := targets[d.EndpointID]; seen {
			continue
		}
		t, err := s.target(ctx, d.EndpointID, now)
		if err != nil {
			s.log.Warn("reading a webhook endpoint failed; its deliveries wait", "endpoint", d.EndpointID, "err", err)
		}
		targets[d.EndpointID] = t
	}
	var mu sync.Mutex
	down := map[string]bool{}
	recorded := 0
	sem := make(chan struct{}, s.opt.Concurrency)
	var wg sync.WaitGroup
	for i := range ds {
		d := &ds[i]
		t := targets[d.EndpointID]
		switch {
		case t == nil:
			s.release(ctx, owner, d)
			continue
		case t.gone:
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			mu.Lock()
			skip := down[d.EndpointID]
			mu.Unlock()
			isDown, ok := s.attempt(ctx, owner, t, d, skip)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				recorded++
			}
			if isDown {
				down[d.EndpointID] = true
			}
		}()
	}
	wg.Wait()
	return recorded
}

// release hands a claimed delivery back untried, due when it was.
func (s *Service) release(ctx context.Context, owner string, d *mdmd.WebhookDelivery) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.st.ReleaseWebhookDelivery(rctx, d.ID, owner, d.NextAttemptAt); err != nil {
		s.log.Warn("releasing a webhook delivery failed; it goes when its lease ends", "delivery", d.ID, "err", err)
	}
}

// attempt makes and records one attempt at a delivery (or, with skip,
// records one not made). down reports an endpoint that looks down; ok is
// false when nothing was recorded (shutdown, or the lease was lost).
func (s *Service) attempt(ctx context.Context, owner string, t *target, d *mdmd.WebhookDelivery, skip bool) (down, ok bool) {
	at := s.now()
	log := s.log.With("delivery", d.ID, "endpoint", d.EndpointID, "message_id", d.MessageID)
	if ctx.Err() != nil {
		s.release(ctx, owner, d) // stopping before sending
		return false, false
	}
	a := mdmd.WebhookAttempt{At: at}
	var retryAfter time.Duration
	switch {
	case t.err != nil:
		a.Error = t.err.Error()
	case skip:
		a.Error = "not sent: another delivery to this endpoint failed moments ago"
	default:
		status, ra, dur, err := s.post(ctx, t, d, at)
		a.Status, a.DurationMS, retryAfter = status, dur.Milliseconds(), ra
		switch {
		case err != nil && ctx.Err() != nil:
			// Interrupted by shutdown: not the receiver's fault, not counted.
			s.release(ctx, owner, d)
			return false, false
		case err != nil:
			a.Error, down = err.Error(), true
		case status < 200 || status > 299:
			a.Error = fmt.Sprintf("the receiver answered %d %s", status, http.StatusText(status))
			if status >= 300 && status < 400 {
				a.Error += " (redirects are not followed)"
			}
			down = status == http.StatusTooManyRequests || status >= 500
		}
	}
	state, next := s.outcome(d, a.Status, retryAfter, at)
	// The outcome is recorded even when the run is stopping: the request went out.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.st.RecordWebhookAttempt(rctx, d.ID, owner, a, state, next); err != nil {
		log.Warn("recording a webhook attempt failed", "err", err, "status", a.Status)
		return down, false
	}
	switch {
	case a.Status == http.StatusGone:
		reason := fmt.Sprintf("the receiver answered 410 Gone at %s", at.UTC().Format(time.RFC3339))
		// Disabling holds the endpoint's pending deliveries, a backlog
		// that may be large: it gets more time than a single write.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.st.DisableWebhookEndpoint(dctx, d.EndpointID, reason); err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
			log.Error("disabling a gone webhook endpoint failed", "err", err)
		} else {
			log.Warn("webhook endpoint disabled: the receiver answered 410 Gone")
		}
	case state == mdmd.WebhookFailed:
		log.Warn("webhook delivery failed for the last time", "attempts", d.RoundAttempts+1, "err", a.Error)
	case state == mdmd.WebhookPending:
		log.Debug("webhook attempt failed, will retry", "err", a.Error, "retry_at", next)
	}
	return down, true
}

// outcome decides what becomes of a delivery after an attempt.
func (s *Service) outcome(d *mdmd.WebhookDelivery, status int, retryAfter time.Duration, at time.Time) (string, time.Time) {
	n := d.RoundAttempts + 1
	switch {
	case status >= 200 && status <= 299:
		return mdmd.WebhookDelivered, time.Time{}
	case status == http.StatusGone, n >= s.opt.MaxAttempts:
		return mdmd.WebhookFailed, time.Time{}
	}
	next := at.Add(Backoff(n))
	if ra := min(retryAfter, maxRetryAfter); at.Add(ra).After(next) {
		next = at.Add(ra)
	}
	return mdmd.WebhookPending, next
}

// post sends one delivery and returns the receiver's status, its
// Retry-After, and how long the request took.
func (s *Service) post(ctx context.Context, t *target, d *mdmd.WebhookDelivery, at time.Time) (int, time.Duration, time.Duration, error) {
	var sigs []string
	for _, sec := range t.secrets {
		sig, err := Sign(sec, d.MessageID, at, d.Payload)
		if err != nil {
			return 0, 0, 0, err
		}
		sigs = append(sigs, sig)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, t.url, bytes.NewReader(d.Payload))
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mdmd-webhooks/1")
	req.Header.Set(HeaderID, d.MessageID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(HeaderSignature, strings.Join(sigs, " "))
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s", s.opt.Timeout)
		}
		return 0, 0, time.Since(start), err
	}
	defer resp.Body.Close()
	// Drained (a little) so the connection can be reused; never stored.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), at), time.Since(start), nil
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoffSchedule is the delay after each failed attempt of a round;
// after the last entry every retry waits backoffMax. With
// DefaultMaxAttempts the last attempt comes about 24 hours after the first.
var backoffSchedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour}

const backoffMax = 2 * time.Hour

// Backoff is the delay after failed attempt n (1-based) of a round: 5 s,
// 30 s, 2 min, 10 min, 30 min, 1 h, then 2 h, each with ±20% jitter so
// that retries to a receiver that was down do not all come at once.
func Backoff(n int) time.Duration {
	d := backoffMax
	if n >= 1 && n <= len(backoffSchedule) {
		d = backoffSchedule[n-1]
	}
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
