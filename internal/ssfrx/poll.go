package ssfrx

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// SETErr is one entry of a poll request's "setErrs" and the body of a push
// error response (RFC 8935 §2.3, RFC 8936 §2.4).
type SETErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// PollRequest is the body of an RFC 8936 poll request.
type PollRequest struct {
	Ack               []string          `json:"ack"`
	SetErrs           map[string]SETErr `json:"setErrs,omitempty"`
	MaxEvents         *int              `json:"maxEvents,omitempty"`
	ReturnImmediately bool              `json:"returnImmediately"`
}

// Poll makes one RFC 8936 poll request. target is a stream id known to the
// receiver (from CreateStream, GetStream, ListStreams, UpdateStream or
// ReplaceStream) whose delivery method is poll, or the poll endpoint URL
// itself. The request is POSTed as JSON with the bearer token:
// {"ack": acks, "setErrs": ..., "maxEvents": maxEvents, "returnImmediately": ...};
// a negative maxEvents omits the member, 0 makes an acknowledge-only request.
// setErrs carries the SETs of earlier polls to the same endpoint that failed
// verification.
//
// The answer must be 200 with {"sets": {jti: SET, ...}, "moreAvailable": bool?}
// and no more SETs than maxEvents. Each SET is verified (its member name must
// equal its jti); verified SETs are stored (Received) and returned, the
// others are excluded and reported in the next poll's setErrs. The caller
// acknowledges returned SETs by passing their JTIs to the next call.
func (r *Receiver) Poll(ctx context.Context, target string, acks []string, maxEvents int, returnImmediately bool) ([]SET, bool, error) {
	ep, err := r.pollEndpoint(target)
	if err != nil {
		return nil, false, err
	}
	req := PollRequest{Ack: append([]string{}, acks...), ReturnImmediately: returnImmediately}
	if maxEvents >= 0 {
		req.MaxEvents = &maxEvents
	}
	r.mu.Lock()
	if errs := r.setErrs[ep]; len(errs) > 0 {
		req.SetErrs = maps.Clone(errs)
	}
	r.mu.Unlock()

	_, body, err := r.do(ctx, http.MethodPost, ep, req, true, http.StatusOK)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	for jti := range req.SetErrs {
		delete(r.setErrs[ep], jti)
	}
	r.mu.Unlock()

	resp, err := decodeObject(body)
	if err != nil {
		return nil, false, nonConformant("poll response: %v", err)
	}
	more := false
	if raw, ok := resp["moreAvailable"]; ok {
		if err := json.Unmarshal(raw, &more); err != nil || strings.TrimSpace(string(raw)) == "null" {
			return nil, false, nonConformant("moreAvailable must be a boolean")
		}
	}
	rawSets, ok := resp["sets"]
	if !ok {
		return nil, false, nonConformant(`poll response lacks the REQUIRED "sets" member`)
	}
	names, values, err := orderedObject(rawSets)
	if err != nil {
		return nil, false, nonConformant("sets: %v", err)
	}
	if maxEvents >= 0 && len(names) > maxEvents {
		return nil, false, nonConformant("poll returned %d SETs for maxEvents %d", len(names), maxEvents)
	}
	var out []SET
	for i, jti := range names {
		var token string
		if err := json.Unmarshal(values[i], &token); err != nil {
			return nil, false, nonConformant("sets[%q] is not a JSON string", jti)
		}
		set, err := r.verify(ctx, token, jti)
		if err != nil {
			r.reject("poll", token, err)
			code, desc := errorCode(err)
			r.mu.Lock()
			if r.setErrs[ep] == nil {
				r.setErrs[ep] = map[string]SETErr{}
			}
			r.setErrs[ep][jti] = SETErr{Err: code, Description: desc}
			r.mu.Unlock()
			continue
		}
		r.store(set)
		out = append(out, *set)
	}
	return out, more, nil
}

// PollAll polls with returnImmediately until moreAvailable is false,
// acknowledging each batch in the next request, and finishes with an
// acknowledge-only request (maxEvents 0) carrying the last acks and any
// pending setErrs. It returns every SET verified on the way. A negative
// maxEvents leaves the batch size to the transmitter.
func (r *Receiver) PollAll(ctx context.Context, target string, maxEvents int) ([]SET, error) {
	if maxEvents == 0 {
		return nil, fmt.Errorf("ssfrx: PollAll needs maxEvents > 0 (or < 0 for no limit)")
	}
	var all []SET
	var acks []string
	for range 10000 {
		sets, more, err := r.Poll(ctx, target, acks, maxEvents, true)
		if err != nil {
			return all, err
		}
		all = append(all, sets...)
		acks = acks[:0]
		for _, s := range sets {
			acks = append(acks, s.JTI)
		}
		if !more {
			ep, _ := r.pollEndpoint(target)
			r.mu.Lock()
			pending := len(r.setErrs[ep])
			r.mu.Unlock()
			if len(acks) == 0 && pending == 0 {
				return all, nil
			}
			_, _, err := r.Poll(ctx, target, acks, 0, true)
			return all, err
		}
	}
	return all, fmt.Errorf("ssfrx: %s keeps reporting moreAvailable", target)
}

func (r *Receiver) pollEndpoint(target string) (string, error) {
	if u, err := url.Parse(target); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return target, nil
	}
	r.mu.Lock()
	cfg, ok := r.streams[target]
	r.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("ssfrx: %q is neither a poll URL nor a known stream id", target)
	}
	if cfg.Delivery == nil || cfg.Delivery.Method != DeliveryPoll {
		return "", fmt.Errorf("ssfrx: stream %q does not use poll delivery", target)
	}
	return cfg.Delivery.EndpointURL, nil
}

// orderedObject decodes a JSON object keeping member order and refusing
// duplicate names.
func orderedObject(data []byte) ([]string, []json.RawMessage, error) {
	if err := checkNoDuplicates(data); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, fmt.Errorf("not a JSON object")
	}
	var names []string
	var values []json.RawMessage
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		names = append(names, t.(string))
		values = append(values, v)
	}
	return names, values, nil
}
