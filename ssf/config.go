package ssf

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mdmd/mdmd"
)

// Stream configuration extension members (receiver-supplied). SSF has no
// member for either; receivers that do not know them leave them out and
// get the defaults.
const (
	// MemberSubjectFormat chooses the format of sub_id in the stream's
	// SETs: "complex" (default: {device: opaque id, user: email}),
	// "email" (the device's owner; devices without one are skipped),
	// "iss_sub" (iss = issuer, sub = device id) or "opaque" (device id).
	MemberSubjectFormat = "mdmd_subject_format"
	// MemberDefaultSubjects is "NONE" (default: only added subjects) or
	// "ALL" (every device; removing a subject excludes it). Changing it
	// clears the stream's subjects.
	MemberDefaultSubjects = "mdmd_default_subjects"
)

var subjectFormats = []string{"complex", "email", "iss_sub", "opaque"}

// maxDescription is where a stream's description is truncated (SSF
// allows the transmitter to truncate it).
const maxDescription = 1000

// Delivery is a stream's delivery configuration (SSF §6.1).
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// StreamConfig is a stream's configuration as the configuration endpoint
// shows it (SSF §8.1.1).
type StreamConfig struct {
	StreamID                string          `json:"stream_id"`
	Iss                     string          `json:"iss"`
	Aud                     json.RawMessage `json:"aud"`
	EventsSupported         []string        `json:"events_supported"`
	EventsRequested         []string        `json:"events_requested,omitempty"`
	EventsDelivered         []string        `json:"events_delivered"`
	Delivery                Delivery        `json:"delivery"`
	MinVerificationInterval int             `json:"min_verification_interval"`
	Description             string          `json:"description,omitempty"`
	SubjectFormat           string          `json:"mdmd_subject_format"`
	DefaultSubjects         string          `json:"mdmd_default_subjects"`
}

// StreamStatus is a stream's status (SSF §8.1.2).
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// config shows a stored stream.
func (t *Transmitter) config(st *mdmd.SSFStream) (StreamConfig, error) {
	c := StreamConfig{StreamID: st.ID, Iss: t.issuer, Aud: json.RawMessage(st.Aud), EventsSupported: EventsSupported,
		EventsDelivered: []string{}, Delivery: Delivery{Method: st.DeliveryMethod, EndpointURL: st.EndpointURL},
		MinVerificationInterval: int(t.opt.MinVerificationInterval.Seconds()), Description: st.Description,
		SubjectFormat: st.SubjectFormat, DefaultSubjects: "NONE"}
	if st.AllSubjects {
		c.DefaultSubjects = "ALL"
	}
	if st.DeliveryMethod == mdmd.SSFDeliveryPoll {
		c.Delivery.EndpointURL = t.pollURL(st.ID)
	}
	if len(st.AuthHeaderSealed) > 0 {
		h, err := t.opt.Box.Open(st.AuthHeaderSealed, authLabel(st.ID))
		if err != nil {
			return c, err
		}
		c.Delivery.AuthorizationHeader = string(h)
	}
	if len(st.EventsRequested) > 0 {
		if err := json.Unmarshal(st.EventsRequested, &c.EventsRequested); err != nil {
			return c, err
		}
	}
	if err := json.Unmarshal(st.EventsDelivered, &c.EventsDelivered); err != nil {
		return c, err
	}
	return c, nil
}

func authLabel(streamID string) string { return "ssf-auth-header/" + streamID }

// members reads a JSON object body. Members this transmitter does not
// know are ignored (SSF defines no rule for them; ignoring them lets
// receivers send extensions of their own). The body is capped by the
// admin API's limit.
func members(r *http.Request) (map[string]json.RawMessage, error) { return membersOr(r, false) }

// membersOr is members; with emptyOK an empty body is an empty object.
func membersOr(r *http.Request, emptyOK bool) (map[string]json.RawMessage, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, mdmd.Errorf(mdmd.EUnsupported, "Content-Type must be application/json, got %q", ct)
		}
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, mdmd.Errorf(mdmd.ETooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return nil, mdmd.Errorf(mdmd.EInvalid, "reading the request body: %v", err)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 && emptyOK {
		return map[string]json.RawMessage{}, nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, mdmd.Errorf(mdmd.EInvalid, "request body must be a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "malformed JSON: %v", err)
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// str reads a string member; a member present as null counts as absent.
func str(m map[string]json.RawMessage, key string) (string, bool, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, mdmd.FieldError(key, "must be a string")
	}
	return s, true, nil
}

func strs(m map[string]json.RawMessage, key string) ([]string, bool, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return nil, false, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, true, mdmd.FieldError(key, "must be an array of strings")
	}
	if len(s) > 100 {
		return nil, true, mdmd.FieldError(key, "at most 100 entries")
	}
	return s, true, nil
}

// audience normalises an aud value to a list.
func audience(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, mdmd.FieldError("aud", "must be a string or an array of strings")
	}
	return many, nil
}

type configMode int

const (
	modeCreate  configMode = iota
	modeUpdate             // PATCH: members present change, the rest stay
	modeReplace            // PUT: receiver-supplied members absent are deleted
)

// apply applies a configuration request to st. It reports whether the
// stream's subject mode changed (its subjects are then cleared).
func (t *Transmitter) apply(st *mdmd.SSFStream, m map[string]json.RawMessage, mode configMode) (clearSubjects bool, err error) {
	// Transmitter-supplied members: absent is fine; present must match
	// what the transmitter would say (SSF §8.1.1.3, §8.1.1.4).
	if _, ok := m["stream_id"]; ok && mode == modeCreate {
		return false, mdmd.FieldError("stream_id", "is assigned by the transmitter")
	}
	if iss, ok, err := str(m, "iss"); err != nil {
		return false, err
	} else if ok && iss != t.issuer {
		return false, mdmd.FieldError("iss", "must be %q", t.issuer)
	}
	// aud is the receiver's, as this transmitter knows it (createStream
	// sets it from the token): a receiver may send it back, never choose
	// it, lest it obtain SETs addressed to another receiver's audience.
	if raw, ok := m["aud"]; ok && !isNull(raw) {
		want, err := audience(raw)
		if err != nil {
			return false, err
		}
		if have, _ := audience(json.RawMessage(st.Aud)); !slices.Equal(have, want) {
			if mode == modeCreate {
				return false, mdmd.FieldError("aud", "must be %s or left out: a stream's audience is its receiver's, which an administrator sets on the receiver's token",
					string(st.Aud))
			}
			return false, mdmd.FieldError("aud", "cannot be changed")
		}
	}
	if sup, ok, err := strs(m, "events_supported"); err != nil {
		return false, err
	} else if ok && !sameSet(sup, EventsSupported) {
		return false, mdmd.FieldError("events_supported", "must be %q", EventsSupported)
	}
	if del, ok, err := strs(m, "events_delivered"); err != nil {
		return false, err
	} else if ok {
		var have []string
		if mode != modeCreate {
			_ = json.Unmarshal(st.EventsDelivered, &have)
		}
		if mode == modeCreate || !sameSet(del, have) {
			return false, mdmd.FieldError("events_delivered", "must match the transmitter's value %q", have)
		}
	}
	if raw, ok := m["min_verification_interval"]; ok && !isNull(raw) {
		var n float64
		if err := json.Unmarshal(raw, &n); err != nil || n != t.opt.MinVerificationInterval.Seconds() {
			return false, mdmd.FieldError("min_verification_interval", "must be %d", int(t.opt.MinVerificationInterval.Seconds()))
		}
	}
	if raw, ok := m["inactivity_timeout"]; ok && !isNull(raw) {
		return false, mdmd.FieldError("inactivity_timeout", "this transmitter has no inactivity timeout")
	}

	// Receiver-supplied members.
	replace := mode != modeUpdate
	if reqs, ok, err := strs(m, "events_requested"); err != nil {
		return false, err
	} else if ok {
		st.EventsRequested, _ = json.Marshal(reqs)
	} else if replace {
		st.EventsRequested = nil
	}
	// Delivery: a request without one means poll (SSF §8.1.1.1).
	if raw, ok := m["delivery"]; ok && !isNull(raw) {
		if err := t.applyDelivery(st, raw, mode); err != nil {
			return false, err
		}
	} else if replace {
		st.DeliveryMethod, st.EndpointURL, st.AuthHeaderSealed = mdmd.SSFDeliveryPoll, "", nil
	}
	if d, ok, err := str(m, "description"); err != nil {
		return false, err
	} else if ok || replace {
		if !utf8.ValidString(d) {
			return false, mdmd.FieldError("description", "must be UTF-8")
		}
		if r := []rune(d); len(r) > maxDescription {
			d = string(r[:maxDescription])
		}
		st.Description = d
	}
	if f, ok, err := str(m, MemberSubjectFormat); err != nil {
		return false, err
	} else if ok || replace {
		if !ok {
			f = "complex"
		}
		if !slices.Contains(subjectFormats, f) {
			return false, mdmd.FieldError(MemberSubjectFormat, "must be one of %q", subjectFormats)
		}
		st.SubjectFormat = f
	}
	if d, ok, err := str(m, MemberDefaultSubjects); err != nil {
		return false, err
	} else if ok || replace {
		if !ok {
			d = "NONE"
		}
		if d != "ALL" && d != "NONE" {
			return false, mdmd.FieldError(MemberDefaultSubjects, `must be "ALL" or "NONE"`)
		}
		all := d == "ALL"
		clearSubjects = mode != modeCreate && all != st.AllSubjects
		st.AllSubjects = all
	}
	delivered := eventsDelivered(st.EventsRequested)
	st.EventsDelivered, _ = json.Marshal(delivered)
	return clearSubjects, nil
}

// eventsDelivered is the supported events the receiver requested (in the
// order of EventsSupported), or all of them when it requested none in
// particular. Requested events this transmitter does not know are ignored.
func eventsDelivered(requested mdmd.RawJSON) []string {
	if len(requested) == 0 {
		return slices.Clone(EventsSupported)
	}
	var reqs []string
	_ = json.Unmarshal(requested, &reqs)
	out := []string{}
	for _, e := range EventsSupported {
		if slices.Contains(reqs, e) {
			out = append(out, e)
		}
	}
	return out
}

func (t *Transmitter) applyDelivery(st *mdmd.SSFStream, raw json.RawMessage, mode configMode) error {
	var d map[string]json.RawMessage
	if err := json.Unmarshal(raw, &d); err != nil {
		return mdmd.FieldError("delivery", "must be an object")
	}
	method, ok, err := str(d, "method")
	if err != nil {
		return mdmd.FieldError("delivery.method", "must be a string")
	}
	if !ok {
		return mdmd.FieldError("delivery.method", "required")
	}
	endpoint, _, err := str(d, "endpoint_url")
	if err != nil {
		return mdmd.FieldError("delivery.endpoint_url", "must be a string")
	}
	auth, _, err := str(d, "authorization_header")
	if err != nil {
		return mdmd.FieldError("delivery.authorization_header", "must be a string")
	}
	switch method {
	case mdmd.SSFDeliveryPush:
		if err := t.checkPushURL(endpoint); err != nil {
			return err
		}
		if len(auth) > 4096 || strings.ContainsAny(auth, "\r\n\x00") {
			return mdmd.FieldError("delivery.authorization_header", "at most 4096 characters, on one line")
		}
		st.DeliveryMethod, st.EndpointURL, st.AuthHeaderSealed = method, endpoint, nil
		if auth != "" {
			sealed, err := t.opt.Box.Seal([]byte(auth), authLabel(st.ID))
			if err != nil {
				return err
			}
			st.AuthHeaderSealed = sealed
		}
	case mdmd.SSFDeliveryPoll:
		// The transmitter supplies a poll stream's endpoint_url; a
		// receiver may send it back unchanged.
		if endpoint != "" && (mode == modeCreate || endpoint != t.pollURL(st.ID)) {
			return mdmd.FieldError("delivery.endpoint_url", "is supplied by the transmitter for poll delivery")
		}
		st.DeliveryMethod, st.EndpointURL, st.AuthHeaderSealed = method, "", nil
	default:
		return mdmd.FieldError("delivery.method", "unsupported delivery method %q: use %q (push) or %q (poll)",
			method, mdmd.SSFDeliveryPush, mdmd.SSFDeliveryPoll)
	}
	return nil
}

// checkPushURL accepts an absolute https URL whose host is not an
// internal address (see target.go); with AllowPrivateTargets, any https
// URL and http to 127.0.0.1, ::1 and localhost (local receivers, tests).
// Credentials belong in authorization_header, not the URL.
func (t *Transmitter) checkPushURL(s string) error {
	field := "delivery.endpoint_url"
	if s == "" {
		return mdmd.FieldError(field, "required for push delivery")
	}
	if len(s) > 2048 {
		return mdmd.FieldError(field, "at most 2048 characters")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return mdmd.FieldError(field, "must be an absolute URL")
	}
	if u.User != nil || u.Fragment != "" {
		return mdmd.FieldError(field, "must have no user information or fragment")
	}
	host := u.Hostname()
	if numericHost(host) {
		return mdmd.FieldError(field, "the host %q is neither a DNS name nor an IP address in standard form", host)
	}
	allow := t.opt.AllowPrivateTargets
	switch u.Scheme {
	case "https":
		if !allow && internalHost(host) {
			return mdmd.FieldError(field, "must not point at a loopback, private, link-local or otherwise internal address (%s)", host)
		}
		return nil
	case "http":
		if allow && isLoopback(host) {
			return nil
		}
	}
	if allow {
		return mdmd.FieldError(field, "must use https (http is allowed only for 127.0.0.1, ::1 and localhost)")
	}
	return mdmd.FieldError(field, "must use https")
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
