package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// pushOutcome is what became of one POST.
type pushOutcome int

const (
	pushDelivered pushOutcome = iota // 202 Accepted
	pushRejected                     // 400: the receiver will never take this SET
	pushRetry                        // anything else: try the stream again later
)

// Push delivers every due SET of the push streams (RFC 8935) and returns
// how many were accepted. It leases a few streams at a time; a stream's
// SETs go out in order per device, several devices at once. The first
// failure other than a 400 stops the stream and defers it with backoff,
// so a receiver that is down gets its SETs, in order, once it is back.
//
// A run starts no POST once its lease nears its end (sendWindow after the
// claim: every POST then ends a fifth of the lease before it, time enough
// to record the outcome): the SETs it did not reach stay due for the next
// claim, so no other replica ever sends a stream's SETs while this one
// still is, and none goes out twice or out of order for that.
func (t *Transmitter) Push(ctx context.Context) (int, error) {
	total := 0
	for ctx.Err() == nil {
		owner := t.opt.Replica + "/" + randHex(6)
		// Taken before the claim, so never later than the database's
		// lease start.
		stopSending := time.Now().Add(t.sendWindow)
		batches, err := t.st.ClaimSSFPush(ctx, owner, t.opt.PushLease, t.opt.PushStreams, t.opt.PushBatch)
		if err != nil || len(batches) == 0 {
			return total, err
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		progress := 0
		for _, b := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := t.pushStream(ctx, b, stopSending)
				// Record the outcome even if ctx ended: what was delivered
				// must not be sent again.
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				err := t.st.FinishSSFPush(fctx, owner, b.Stream.ID, res)
				mu.Lock()
				defer mu.Unlock()
				total += len(res.Delivered)
				progress += len(res.Delivered) + len(res.Failed)
				if err != nil && firstErr == nil {
					firstErr = err
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return total, firstErr
		}
		if progress == 0 {
			// Every stream claimed failed: they wait for their backoff.
			return total, nil
		}
	}
	return total, ctx.Err()
}

// pushStream POSTs a claimed batch: SETs of one subject in order, up to
// PushConcurrency subjects at once, none started after stopSending.
func (t *Transmitter) pushStream(ctx context.Context, b mdmd.SSFPushBatch, stopSending time.Time) storage.SSFPushResult {
	res := storage.SSFPushResult{Failed: map[int64]string{}}
	st := b.Stream
	var auth string
	if len(st.AuthHeaderSealed) > 0 {
		h, err := t.opt.Box.Open(st.AuthHeaderSealed, authLabel(st.ID))
		if err != nil {
			t.log.Error("cannot open a stream's authorization header", "stream_id", st.ID, "err", err)
			return t.deferStream(st, res, err.Error())
		}
		auth = string(h)
	}
	// Group by subject, keeping the queue's order within each group.
	var order []string
	groups := map[string][]mdmd.SSFSet{}
	for _, s := range b.Sets {
		if _, ok := groups[s.SubjectKey]; !ok {
			order = append(order, s.SubjectKey)
		}
		groups[s.SubjectKey] = append(groups[s.SubjectKey], s)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	// Every POST ends by then, whatever is left of its own timeout.
	endBy := stopSending.Add(t.opt.PushTimeout)
	var mu sync.Mutex
	var reason string
	late := 0 // SETs left for the next claim: the lease was running out
	work := make(chan []mdmd.SSFSet)
	var wg sync.WaitGroup
	for range min(t.opt.PushConcurrency, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for group := range work {
				for i, s := range group {
					if sctx.Err() != nil {
						break
					}
					if !time.Now().Before(stopSending) {
						// The rest of this subject's SETs wait, in order.
						mu.Lock()
						late += len(group) - i
						mu.Unlock()
						break
					}
					outcome, msg := t.pushOne(sctx, st, auth, s, endBy)
					mu.Lock()
					switch outcome {
					case pushDelivered:
						res.Delivered = append(res.Delivered, s.ID)
					case pushRejected:
						res.Failed[s.ID] = msg
						t.log.Error("receiver rejected a SET", "stream_id", st.ID, "jti", s.JTI, "err", msg)
					case pushRetry:
						res.Retry = append(res.Retry, s.ID)
						if reason == "" {
							reason = msg
						}
						stop()
					}
					mu.Unlock()
					if outcome == pushRetry {
						break
					}
				}
			}
		}()
	}
	for i, key := range order {
		if !time.Now().Before(stopSending) {
			for _, k := range order[i:] {
				late += len(groups[k])
			}
			break
		}
		select {
		case work <- groups[key]:
		case <-sctx.Done():
		}
		if sctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if late > 0 {
		t.log.Debug("push run reached the end of its lease; the rest of the stream waits for the next claim", "stream_id", st.ID, "left", late)
	}
	if reason != "" && ctx.Err() == nil {
		return t.deferStream(st, res, reason)
	}
	// Done, or interrupted by shutdown: what is left stays due.
	return res
}

// deferStream schedules the stream's next attempt after a failure.
func (t *Transmitter) deferStream(st mdmd.SSFStream, res storage.SSFPushResult, reason string) storage.SSFPushResult {
	at := t.opt.Now().Add(t.opt.RetryBackoff(st.PushFailures + 1))
	res.RetryAt, res.Error = &at, reason
	t.log.Warn("push to a receiver failed; will retry", "stream_id", st.ID, "endpoint", redactURL(st.EndpointURL),
		"failures", st.PushFailures+1, "retry_at", at, "err", reason)
	return res
}

// pushOne signs one SET and POSTs it (RFC 8935 §2), giving up at
// PushTimeout or endBy, whichever comes first.
func (t *Transmitter) pushOne(ctx context.Context, st mdmd.SSFStream, auth string, s mdmd.SSFSet, endBy time.Time) (pushOutcome, string) {
	token, err := t.opt.Keys.Sign(ctx, TypSET, json.RawMessage(s.Claims))
	if err != nil {
		return pushRetry, "signing: " + err.Error()
	}
	until := time.Now().Add(t.opt.PushTimeout)
	if endBy.Before(until) {
		until = endBy
	}
	rctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, st.EndpointURL, strings.NewReader(token))
	if err != nil {
		return pushRetry, err.Error()
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			err = uerr.Unwrap()
		}
		return pushRetry, "POST failed: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusAccepted:
		return pushDelivered, ""
	case http.StatusBadRequest:
		// RFC 8935 §2.3: {"err": code, "description": text}.
		var e struct {
			Err         string `json:"err"`
			Description string `json:"description"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Err == "" {
			e.Err = "invalid_request"
		}
		return pushRejected, strings.TrimSuffix(e.Err+": "+e.Description, ": ")
	}
	return pushRetry, fmt.Sprintf("HTTP %d (want 202)", resp.StatusCode)
}

// redactURL drops the query of a URL for logs.
func redactURL(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i]
	}
	return s
}
