package ssfrx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
)

// Audience is a JWT "aud" value: a string or an array of strings on input; a
// single value is encoded as a string, several as an array.
type Audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var out Audience
	switch v := v.(type) {
	case string:
		out = Audience{v}
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return errors.New("aud array must hold only strings")
			}
			out = append(out, s)
		}
	default:
		return errors.New("aud must be a string or an array of strings")
	}
	if slices.Contains(out, "") {
		return errors.New("aud values must not be empty")
	}
	*a = out
	return nil
}

// MarshalJSON encodes one value as a string and several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// Delivery is the "delivery" member of a stream configuration (SSF 1.0 §6.1).
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// StreamConfig is an Event Stream configuration (SSF 1.0 §8.1.1). Members
// left at their zero value are omitted from requests.
type StreamConfig struct {
	StreamID                string    `json:"stream_id,omitempty"`
	Iss                     string    `json:"iss,omitempty"`
	Aud                     Audience  `json:"aud,omitempty"`
	EventsSupported         []string  `json:"events_supported,omitempty"`
	EventsRequested         []string  `json:"events_requested,omitempty"`
	EventsDelivered         []string  `json:"events_delivered,omitempty"`
	Delivery                *Delivery `json:"delivery,omitempty"`
	MinVerificationInterval *int      `json:"min_verification_interval,omitempty"`
	Description             string    `json:"description,omitempty"`
	InactivityTimeout       *int      `json:"inactivity_timeout,omitempty"`
}

// StreamStatus is the body of the status endpoint (SSF 1.0 §8.1.2).
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// Stream status values.
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

func (r *Receiver) endpoint(name string, pick func(*TransmitterConfig) string) (string, error) {
	cfg := r.Config()
	if cfg == nil {
		return "", errors.New("ssfrx: Discover has not been called")
	}
	if ep := pick(cfg); ep != "" {
		return ep, nil
	}
	return "", fmt.Errorf("ssfrx: the transmitter does not advertise %s", name)
}

func withStreamID(endpoint, id string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	q := u.Query()
	q.Set("stream_id", id)
	u.RawQuery = q.Encode()
	return u.String()
}

// CreateStream creates a stream: POST to the configuration endpoint, 201
// Created expected. cfg is sent as given (normally only the Receiver-Supplied
// events_requested, delivery and description). The delivery method (poll
// when cfg.Delivery is nil, SSF 1.0 §8.1.1.1) must be one the transmitter
// supports. For a push stream with delivery.authorization_header, that value
// becomes the one PushHandler requires (SetPushAuthorization); UpdateStream
// and ReplaceStream do the same. The returned configuration is validated (see GetStream) and
// remembered, so Poll can be given the stream id.
func (r *Receiver) CreateStream(ctx context.Context, cfg StreamConfig) (*StreamConfig, error) {
	ep, err := r.endpoint("configuration_endpoint", func(c *TransmitterConfig) string { return c.ConfigurationEndpoint })
	if err != nil {
		return nil, err
	}
	method := DeliveryPoll
	if cfg.Delivery != nil {
		method = cfg.Delivery.Method
	}
	if sup := r.Config().DeliveryMethodsSupported; sup != nil && !slices.Contains(sup, method) {
		return nil, fmt.Errorf("ssfrx: delivery method %q is not in delivery_methods_supported %v", method, sup)
	}
	r.notePushAuth(cfg.Delivery)
	_, body, err := r.do(ctx, http.MethodPost, ep, cfg, true, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	return r.checkStream(body, "", method)
}

// GetStream reads one stream: GET configuration_endpoint?stream_id=id, 200
// expected. The answer must carry stream_id (equal to id), iss (identical to
// the issuer), aud (containing a configured audience, if any is set),
// events_delivered (a subset of events_supported ∩ events_requested when
// those are present) and delivery (with an endpoint_url).
func (r *Receiver) GetStream(ctx context.Context, id string) (*StreamConfig, error) {
	ep, err := r.endpoint("configuration_endpoint", func(c *TransmitterConfig) string { return c.ConfigurationEndpoint })
	if err != nil {
		return nil, err
	}
	_, body, err := r.do(ctx, http.MethodGet, withStreamID(ep, id), nil, true, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return r.checkStream(body, id, "")
}

// ListStreams reads every stream of this receiver: GET on the configuration
// endpoint without stream_id, which answers a JSON array (possibly empty).
func (r *Receiver) ListStreams(ctx context.Context) ([]StreamConfig, error) {
	ep, err := r.endpoint("configuration_endpoint", func(c *TransmitterConfig) string { return c.ConfigurationEndpoint })
	if err != nil {
		return nil, err
	}
	_, body, err := r.do(ctx, http.MethodGet, ep, nil, true, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil || items == nil {
		return nil, nonConformant("stream list is not a JSON array: %s", body)
	}
	out := make([]StreamConfig, 0, len(items))
	for _, it := range items {
		c, err := r.checkStream(it, "", "")
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, nil
}

// UpdateStream sends PATCH with partial (a StreamConfig, a map or raw JSON,
// which must include stream_id) and expects 200 with the whole updated
// configuration. A 202 answer yields ErrAccepted.
func (r *Receiver) UpdateStream(ctx context.Context, partial any) (*StreamConfig, error) {
	return r.modify(ctx, http.MethodPatch, partial)
}

// ReplaceStream sends PUT with the full configuration and expects 200 with
// the updated configuration. A 202 answer yields ErrAccepted.
func (r *Receiver) ReplaceStream(ctx context.Context, cfg StreamConfig) (*StreamConfig, error) {
	if cfg.Delivery != nil {
		if sup := r.Config(); sup != nil && sup.DeliveryMethodsSupported != nil && !slices.Contains(sup.DeliveryMethodsSupported, cfg.Delivery.Method) {
			return nil, fmt.Errorf("ssfrx: delivery method %q is not in delivery_methods_supported", cfg.Delivery.Method)
		}
	}
	return r.modify(ctx, http.MethodPut, cfg)
}

func (r *Receiver) modify(ctx context.Context, method string, body any) (*StreamConfig, error) {
	ep, err := r.endpoint("configuration_endpoint", func(c *TransmitterConfig) string { return c.ConfigurationEndpoint })
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("ssfrx: encoding request: %w", err)
	}
	var id struct {
		StreamID string    `json:"stream_id"`
		Delivery *Delivery `json:"delivery"`
	}
	if json.Unmarshal(raw, &id) != nil || id.StreamID == "" {
		return nil, errors.New("ssfrx: the request body must contain stream_id")
	}
	r.notePushAuth(id.Delivery)
	resp, data, err := r.do(ctx, method, ep, json.RawMessage(raw), true, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusAccepted {
		return nil, ErrAccepted
	}
	return r.checkStream(data, id.StreamID, "")
}

// DeleteStream sends DELETE configuration_endpoint?stream_id=id and expects
// 204 No Content.
func (r *Receiver) DeleteStream(ctx context.Context, id string) error {
	ep, err := r.endpoint("configuration_endpoint", func(c *TransmitterConfig) string { return c.ConfigurationEndpoint })
	if err != nil {
		return err
	}
	if _, _, err := r.do(ctx, http.MethodDelete, withStreamID(ep, id), nil, true, http.StatusNoContent); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.streams, id)
	r.mu.Unlock()
	return nil
}

// GetStatus sends GET status_endpoint?stream_id=id and expects 200 with
// {stream_id, status, reason?}.
func (r *Receiver) GetStatus(ctx context.Context, id string) (*StreamStatus, error) {
	ep, err := r.endpoint("status_endpoint", func(c *TransmitterConfig) string { return c.StatusEndpoint })
	if err != nil {
		return nil, err
	}
	_, body, err := r.do(ctx, http.MethodGet, withStreamID(ep, id), nil, true, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return checkStatus(body, id)
}

// SetStatus sends POST status_endpoint {stream_id, status, reason?} and
// expects 200 with the updated status. A 202 answer yields ErrAccepted.
func (r *Receiver) SetStatus(ctx context.Context, id, status, reason string) (*StreamStatus, error) {
	ep, err := r.endpoint("status_endpoint", func(c *TransmitterConfig) string { return c.StatusEndpoint })
	if err != nil {
		return nil, err
	}
	req := StreamStatus{StreamID: id, Status: status, Reason: reason}
	resp, body, err := r.do(ctx, http.MethodPost, ep, req, true, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusAccepted {
		return nil, ErrAccepted
	}
	return checkStatus(body, id)
}

func checkStatus(body []byte, id string) (*StreamStatus, error) {
	m, err := decodeObject(body)
	if err != nil {
		return nil, nonConformant("stream status: %v", err)
	}
	var st StreamStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, nonConformant("stream status: %v", err)
	}
	if st.StreamID != id {
		return nil, nonConformant("stream status is for stream_id %q, want %q", st.StreamID, id)
	}
	if err := enumMember(m, "status", true, StatusEnabled, StatusPaused, StatusDisabled); err != nil {
		return nil, nonConformant("stream status: %v", err)
	}
	return &st, nil
}

// AddSubject sends POST add_subject_endpoint {stream_id, subject, verified?}
// and expects 200 (SSF 1.0 §8.1.3.2) or 204 (allowed by §9.1). subject is sent as given (a *Subject, map or raw JSON);
// verified is omitted when nil.
func (r *Receiver) AddSubject(ctx context.Context, id string, subject any, verified *bool) error {
	ep, err := r.endpoint("add_subject_endpoint", func(c *TransmitterConfig) string { return c.AddSubjectEndpoint })
	if err != nil {
		return err
	}
	body := struct {
		StreamID string `json:"stream_id"`
		Subject  any    `json:"subject"`
		Verified *bool  `json:"verified,omitempty"`
	}{id, subject, verified}
	_, _, err = r.do(ctx, http.MethodPost, ep, body, true, http.StatusOK, http.StatusNoContent)
	return err
}

// RemoveSubject sends POST remove_subject_endpoint {stream_id, subject} and
// expects 204.
func (r *Receiver) RemoveSubject(ctx context.Context, id string, subject any) error {
	ep, err := r.endpoint("remove_subject_endpoint", func(c *TransmitterConfig) string { return c.RemoveSubjectEndpoint })
	if err != nil {
		return err
	}
	body := struct {
		StreamID string `json:"stream_id"`
		Subject  any    `json:"subject"`
	}{id, subject}
	_, _, err = r.do(ctx, http.MethodPost, ep, body, true, http.StatusNoContent)
	return err
}

// RequestVerification sends POST verification_endpoint {stream_id, state?}
// and expects 204. A non-empty state is remembered before the request is
// sent: the verification event that echoes it is accepted once; any other
// state is refused with invalid_state.
func (r *Receiver) RequestVerification(ctx context.Context, id, state string) error {
	ep, err := r.endpoint("verification_endpoint", func(c *TransmitterConfig) string { return c.VerificationEndpoint })
	if err != nil {
		return err
	}
	if state != "" {
		r.mu.Lock()
		r.states[id] = append(r.states[id], state)
		r.mu.Unlock()
	}
	body := struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state,omitempty"`
	}{id, state}
	_, _, err = r.do(ctx, http.MethodPost, ep, body, true, http.StatusNoContent)
	if err != nil && state != "" {
		r.mu.Lock()
		if i := slices.Index(r.states[id], state); i >= 0 {
			r.states[id] = slices.Delete(r.states[id], i, i+1)
		}
		r.mu.Unlock()
	}
	return err
}

// notePushAuth makes the push endpoint require the authorization_header the
// receiver hands to the transmitter for a push stream.
func (r *Receiver) notePushAuth(d *Delivery) {
	if d != nil && d.Method == DeliveryPush && d.AuthorizationHeader != "" {
		r.SetPushAuthorization(d.AuthorizationHeader)
	}
}

// checkStream validates a stream configuration returned by the transmitter.
// wantID, if set, is the stream_id it must carry; wantMethod, if set, the
// delivery method it must use.
func (r *Receiver) checkStream(body []byte, wantID, wantMethod string) (*StreamConfig, error) {
	m, err := decodeObject(body)
	if err != nil {
		return nil, nonConformant("stream configuration: %v", err)
	}
	for _, req := range []string{"stream_id", "iss", "aud", "events_delivered", "delivery"} {
		if _, ok := m[req]; !ok {
			return nil, nonConformant("stream configuration lacks REQUIRED %q: %s", req, body)
		}
	}
	var c StreamConfig
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, nonConformant("stream configuration: %v", err)
	}
	switch {
	case c.StreamID == "":
		return nil, nonConformant("stream_id is empty")
	case wantID != "" && c.StreamID != wantID:
		return nil, nonConformant("stream_id is %q, want %q", c.StreamID, wantID)
	case c.Iss != r.issuer:
		return nil, nonConformant("stream iss %q is not identical to the issuer %q", c.Iss, r.issuer)
	case len(c.Aud) == 0:
		return nil, nonConformant("stream aud is empty")
	case c.EventsDelivered == nil:
		return nil, nonConformant("events_delivered must be an array")
	case c.Delivery == nil || c.Delivery.Method == "":
		return nil, nonConformant("delivery.method is missing")
	case c.Delivery.Method != DeliveryPush && c.Delivery.Method != DeliveryPoll:
		return nil, nonConformant("unknown delivery method %q", c.Delivery.Method)
	case wantMethod != "" && c.Delivery.Method != wantMethod:
		return nil, nonConformant("delivery method is %q, requested %q", c.Delivery.Method, wantMethod)
	case !isHTTPURL(c.Delivery.EndpointURL):
		return nil, nonConformant("delivery.endpoint_url %q is not an absolute http(s) URL", c.Delivery.EndpointURL)
	}
	r.mu.Lock()
	aud := r.audiences
	r.mu.Unlock()
	if len(aud) > 0 && !intersects(c.Aud, aud) {
		return nil, nonConformant("stream aud %v contains none of the receiver's audiences %v", []string(c.Aud), aud)
	}
	for _, ev := range c.EventsDelivered {
		if (c.EventsSupported != nil && !slices.Contains(c.EventsSupported, ev)) ||
			(c.EventsRequested != nil && !slices.Contains(c.EventsRequested, ev)) {
			return nil, nonConformant("events_delivered %q is not in events_supported ∩ events_requested", ev)
		}
	}
	if (c.MinVerificationInterval != nil && *c.MinVerificationInterval < 0) ||
		(c.InactivityTimeout != nil && *c.InactivityTimeout < 0) {
		return nil, nonConformant("negative min_verification_interval or inactivity_timeout")
	}
	r.mu.Lock()
	r.streams[c.StreamID] = c
	r.mu.Unlock()
	return &c, nil
}
