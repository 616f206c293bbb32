package ssfrx

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Security Event Token error codes (RFC 8935 §2.4, plus invalid_state from
// SSF 1.0 §8.1.4.1).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidKey           = "invalid_key"
	CodeInvalidIssuer        = "invalid_issuer"
	CodeInvalidAudience      = "invalid_audience"
	CodeAuthenticationFailed = "authentication_failed"
	CodeAccessDenied         = "access_denied"
	CodeInvalidState         = "invalid_state"
)

// SETError is the reason a SET was refused. Code is one of the Code*
// constants; it is what the push endpoint returns as "err" and what a poll
// reports in "setErrs".
type SETError struct {
	Code        string
	Description string
}

func (e *SETError) Error() string { return "ssfrx: SET refused: " + e.Code + ": " + e.Description }

func setErr(code, format string, args ...any) *SETError {
	return &SETError{Code: code, Description: fmt.Sprintf(format, args...)}
}

func errorCode(err error) (code, desc string) {
	var se *SETError
	if errors.As(err, &se) {
		return se.Code, se.Description
	}
	return CodeInvalidRequest, err.Error()
}

// SET is a verified Security Event Token.
type SET struct {
	JTI       string
	Issuer    string
	Audience  []string
	IssuedAt  time.Time
	TxnID     string // "txn", empty if absent
	SubID     json.RawMessage
	Subject   *Subject // SubID decoded
	EventType string   // the single key of "events"
	Events    map[string]json.RawMessage
	Claims    map[string]json.RawMessage // every claim, verbatim
	Raw       string                     // the compact JWS as received
}

// Event returns the payload of the given event type.
func (s SET) Event(eventType string) (json.RawMessage, bool) {
	ev, ok := s.Events[eventType]
	return ev, ok
}

// Verification returns the "state" of a verification event; ok is false for
// other events. state is empty for a transmitter-initiated verification.
func (s SET) Verification() (state string, ok bool) {
	var v struct {
		State string `json:"state"`
	}
	if !s.decode(EventVerification, &v) {
		return "", false
	}
	return v.State, true
}

// StreamUpdated is the payload of the SSF stream-updated event (SSF 1.0 §8.1.5).
type StreamUpdated struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// StreamUpdated returns the stream-updated payload, if this SET carries one.
func (s SET) StreamUpdated() (*StreamUpdated, bool) {
	var v StreamUpdated
	return &v, s.decode(EventStreamUpdated, &v)
}

// NumericDate is a JSON number of seconds since the epoch (RFC 7519 §2).
type NumericDate float64

// Time converts d to a time.Time.
func (d NumericDate) Time() time.Time {
	sec, frac := math.Modf(float64(d))
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// CAEPCommon holds the optional claims every CAEP event may carry (CAEP 1.0 §2).
type CAEPCommon struct {
	EventTimestamp   *NumericDate      `json:"event_timestamp,omitempty"`
	InitiatingEntity string            `json:"initiating_entity,omitempty"`
	ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
	ReasonUser       map[string]string `json:"reason_user,omitempty"`
}

// CAEPDeviceComplianceChange is the CAEP device-compliance-change payload
// (CAEP 1.0 §3.5). Statuses are "compliant" or "not-compliant".
type CAEPDeviceComplianceChange struct {
	CAEPCommon
	PreviousStatus string `json:"previous_status"`
	CurrentStatus  string `json:"current_status"`
}

// CAEPRiskLevelChange is the CAEP risk-level-change payload (CAEP 1.0 §3.8).
// Levels are LOW, MEDIUM or HIGH.
type CAEPRiskLevelChange struct {
	CAEPCommon
	RiskReason    string `json:"risk_reason,omitempty"`
	Principal     string `json:"principal"`
	CurrentLevel  string `json:"current_level"`
	PreviousLevel string `json:"previous_level,omitempty"`
}

// DeviceComplianceChange returns the device-compliance-change payload, if any.
func (s SET) DeviceComplianceChange() (*CAEPDeviceComplianceChange, bool) {
	var v CAEPDeviceComplianceChange
	return &v, s.decode(EventDeviceComplianceChange, &v)
}

// RiskLevelChange returns the risk-level-change payload, if any.
func (s SET) RiskLevelChange() (*CAEPRiskLevelChange, bool) {
	var v CAEPRiskLevelChange
	return &v, s.decode(EventRiskLevelChange, &v)
}

func (s SET) decode(eventType string, v any) bool {
	raw, ok := s.Events[eventType]
	return ok && json.Unmarshal(raw, v) == nil
}

// VerifySET verifies a compact-serialized SET and records it as seen. It does
// not store it in Received (the push and poll paths do that).
//
// JOSE header: "typ" secevent+jwt (or its full media type
// application/secevent+jwt, RFC 7515 §4.1.9); "alg" exactly RS256; no "crit";
// "kid" selects the JWKS key (refetched once when unknown); the RSA key has
// at least 2048 bits.
//
// Claims: no duplicate names; "iss" identical to the issuer; "aud" (string or
// array) containing a configured audience; "iat" a NumericDate not in the
// future; "jti" a non-empty string never seen before; "events" an object with
// exactly one event whose value is an object; "sub_id" a valid subject
// identifier; no "sub" and no "exp" (SSF 1.0 §4.1.2, §4.1.7); "txn", if
// present, a string; "nbf", if present, not in the future. Payloads of the
// SSF and CAEP event types are validated against their definitions; the
// "state" of a verification event must be one requested through
// RequestVerification for that stream.
func (r *Receiver) VerifySET(token string) (*SET, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.verify(ctx, token, "")
}

func (r *Receiver) verify(ctx context.Context, token, wantJTI string) (*SET, error) {
	if i := strings.IndexFunc(token, func(c rune) bool { return !isBase64URL(c) && c != '.' }); i >= 0 {
		return nil, setErr(CodeInvalidRequest, "character %q at offset %d is not allowed in a JWS compact serialization", token[i], i)
	}
	parts := strings.Split(token, ".")
	if len(parts) == 5 {
		return nil, setErr(CodeInvalidRequest, "encrypted (JWE) SETs are not supported; expected a JWS")
	}
	if len(parts) != 3 {
		return nil, setErr(CodeInvalidRequest, "not a JWS compact serialization (%d parts)", len(parts))
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, setErr(CodeInvalidRequest, "JOSE header is not base64url: %v", err)
	}
	hdr, err := decodeObject(hdrJSON)
	if err != nil {
		return nil, setErr(CodeInvalidRequest, "JOSE header: %v", err)
	}
	typ, _, err := stringMember(hdr, "typ")
	if err != nil || !(strings.EqualFold(typ, "secevent+jwt") || strings.EqualFold(typ, "application/secevent+jwt")) {
		return nil, setErr(CodeInvalidRequest, "JOSE header typ is %q, want secevent+jwt", typ)
	}
	alg, _, err := stringMember(hdr, "alg")
	if err != nil || alg != string(jose.RS256) {
		return nil, setErr(CodeInvalidKey, "JOSE header alg is %q; only RS256 is accepted", alg)
	}
	if _, ok := hdr["crit"]; ok {
		return nil, setErr(CodeInvalidRequest, "JOSE header carries crit; no extension is supported")
	}
	kid, _, err := stringMember(hdr, "kid")
	if err != nil {
		return nil, setErr(CodeInvalidRequest, "JOSE header kid: %v", err)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, setErr(CodeInvalidRequest, "malformed JWS: %v", err)
	}
	key, err := r.signingKey(ctx, kid)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, setErr(CodeInvalidKey, "signature does not verify with key %q: %v", kid, err)
	}
	set, stream, err := r.checkClaims(payload)
	if err != nil {
		return nil, err
	}
	set.Raw = token
	if wantJTI != "" && set.JTI != wantJTI {
		return nil, setErr(CodeInvalidRequest, "delivered under jti %q but the SET's jti is %q", wantJTI, set.JTI)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[set.JTI] {
		return nil, setErr(CodeInvalidRequest, "jti %q already received (replay)", set.JTI)
	}
	if state, ok := set.Verification(); ok && state != "" {
		i := slices.Index(r.states[stream], state)
		if i < 0 {
			return nil, setErr(CodeInvalidState, "verification state %q was not requested for stream %q", state, stream)
		}
		r.states[stream] = slices.Delete(r.states[stream], i, i+1)
	}
	r.seen[set.JTI] = true
	return set, nil
}

// checkClaims validates the JWT claims set and returns the SET and, for SSF
// stream events, the stream id from sub_id.
func (r *Receiver) checkClaims(payload []byte) (*SET, string, error) {
	claims, err := decodeObject(payload)
	if err != nil {
		return nil, "", setErr(CodeInvalidRequest, "claims: %v", err)
	}
	set := &SET{Claims: claims}
	bad := func(format string, args ...any) (*SET, string, error) {
		return nil, "", setErr(CodeInvalidRequest, format, args...)
	}

	iss, ok, err := stringMember(claims, "iss")
	if err != nil || !ok {
		return bad("iss claim missing or not a string")
	}
	if iss != r.issuer {
		return nil, "", setErr(CodeInvalidIssuer, "iss %q is not %q", iss, r.issuer)
	}
	set.Issuer = iss

	r.mu.Lock()
	audiences := r.audiences
	critical := []string(nil)
	if r.config != nil {
		critical = r.config.CriticalSubjectMembers
	}
	r.mu.Unlock()
	rawAud, ok := claims["aud"]
	if !ok {
		return nil, "", setErr(CodeInvalidAudience, "aud claim missing")
	}
	var aud Audience
	if err := json.Unmarshal(rawAud, &aud); err != nil || len(aud) == 0 {
		return bad("aud must be a non-empty string or array of strings")
	}
	if !intersects(aud, audiences) {
		return nil, "", setErr(CodeInvalidAudience, "aud %v contains none of the receiver's audiences %v", []string(aud), audiences)
	}
	set.Audience = aud

	iat, ok, err := dateMember(claims, "iat")
	if err != nil || !ok {
		return bad("iat claim missing or not a NumericDate")
	}
	if iat.After(time.Now().Add(MaxClockSkew)) {
		return bad("iat %s is in the future", iat.Format(time.RFC3339))
	}
	set.IssuedAt = iat

	if set.JTI, ok, err = stringMember(claims, "jti"); err != nil || !ok || set.JTI == "" {
		return bad("jti claim missing, empty or not a string")
	}
	if _, ok := claims["sub"]; ok {
		return bad(`the JWT "sub" claim MUST NOT be present in an SSF SET; the subject belongs in sub_id`)
	}
	if _, ok := claims["exp"]; ok {
		return bad(`the "exp" claim MUST NOT be used in SSF SETs`)
	}
	if nbf, ok, err := dateMember(claims, "nbf"); err != nil {
		return bad("nbf is not a NumericDate")
	} else if ok && nbf.After(time.Now().Add(MaxClockSkew)) {
		return bad("nbf %s is in the future", nbf.Format(time.RFC3339))
	}
	if _, _, err := dateMember(claims, "toe"); err != nil {
		return bad("toe is not a NumericDate")
	}
	if set.TxnID, _, err = stringMember(claims, "txn"); err != nil {
		return bad("txn must be a string (RFC 8417 §2.2)")
	}

	rawEvents, ok := claims["events"]
	if !ok {
		return bad("events claim missing")
	}
	events, err := decodeObject(rawEvents)
	if err != nil {
		return bad("events claim: %v", err)
	}
	if len(events) != 1 {
		return bad("events claim holds %d events; an SSF SET carries exactly one", len(events))
	}
	for typ, payload := range events {
		if u, err := url.Parse(typ); err != nil || u.Scheme == "" {
			return bad("event type %q is not a URI", typ)
		}
		set.EventType = typ
		ev, err := decodeObject(payload)
		if err != nil {
			return bad("event %s payload: %v", typ, err)
		}
		if err := checkEvent(typ, ev, critical); err != nil {
			return bad("event %s: %v", typ, err)
		}
	}
	set.Events = events

	rawSub, ok := claims["sub_id"]
	if !ok {
		return bad("sub_id claim missing (SSF 1.0 §3.1)")
	}
	if set.Subject, err = parseSubject(rawSub, critical, true); err != nil {
		return bad("sub_id: %v", err)
	}
	set.SubID = rawSub

	stream := ""
	if set.EventType == EventVerification || set.EventType == EventStreamUpdated {
		if set.Subject.Format != "opaque" {
			return bad("sub_id of %s must have format opaque holding the stream_id", set.EventType)
		}
		stream = set.Subject.ID
	}
	return set, stream, nil
}

// checkEvent validates an event payload against its definition.
func checkEvent(typ string, ev map[string]json.RawMessage, critical []string) error {
	if strings.HasPrefix(typ, caepPrefix) {
		if err := checkCAEPCommon(ev); err != nil {
			return err
		}
	}
	if raw, ok := ev["subject"]; ok {
		if typ == EventVerification || typ == EventStreamUpdated {
			return errors.New(`SSF events MUST NOT carry "subject" in the event; use sub_id`)
		}
		if _, err := parseSubject(raw, critical, true); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
	}
	switch typ {
	case EventVerification:
		return optString(ev, "state")
	case EventStreamUpdated:
		if err := enumMember(ev, "status", true, "enabled", "paused", "disabled"); err != nil {
			return err
		}
		return optString(ev, "reason")
	case EventDeviceComplianceChange:
		if err := enumMember(ev, "previous_status", true, "compliant", "not-compliant"); err != nil {
			return err
		}
		return enumMember(ev, "current_status", true, "compliant", "not-compliant")
	case EventRiskLevelChange:
		if s, ok, err := stringMember(ev, "principal"); err != nil || !ok || s == "" {
			return errors.New("principal is REQUIRED and must be a non-empty string")
		}
		if err := enumMember(ev, "current_level", true, "LOW", "MEDIUM", "HIGH"); err != nil {
			return err
		}
		if err := enumMember(ev, "previous_level", false, "LOW", "MEDIUM", "HIGH"); err != nil {
			return err
		}
		return optString(ev, "risk_reason")
	case EventTokenClaimsChange:
		c, err := decodeObject(ev["claims"])
		if err != nil || len(c) == 0 {
			return errors.New("claims is REQUIRED and must be an object with at least one claim")
		}
	case EventCredentialChange:
		if s, ok, err := stringMember(ev, "credential_type"); err != nil || !ok || s == "" {
			return errors.New("credential_type is REQUIRED and must be a string")
		}
		if err := enumMember(ev, "change_type", true, "create", "revoke", "update", "delete"); err != nil {
			return err
		}
		return optString(ev, "friendly_name", "x509_issuer", "x509_serial", "fido2_aaguid")
	case EventAssuranceLevelChange:
		for _, m := range []string{"namespace", "current_level"} {
			if s, ok, err := stringMember(ev, m); err != nil || !ok || s == "" {
				return fmt.Errorf("%s is REQUIRED and must be a string", m)
			}
		}
		if err := enumMember(ev, "change_direction", false, "increase", "decrease"); err != nil {
			return err
		}
		return optString(ev, "previous_level")
	case EventSessionEstablished:
		if raw, ok := ev["amr"]; ok {
			var amr []string
			if err := json.Unmarshal(raw, &amr); err != nil || amr == nil {
				return errors.New("amr must be an array of strings")
			}
		}
		return optString(ev, "fp_ua", "acr", "ext_id")
	case EventSessionPresented:
		return optString(ev, "fp_ua", "ext_id")
	}
	return nil
}

func checkCAEPCommon(ev map[string]json.RawMessage) error {
	if _, _, err := dateMember(ev, "event_timestamp"); err != nil {
		return errors.New("event_timestamp must be a JSON number")
	}
	if err := enumMember(ev, "initiating_entity", false, "admin", "user", "policy", "system"); err != nil {
		return err
	}
	for _, m := range []string{"reason_admin", "reason_user"} {
		raw, ok := ev[m]
		if !ok {
			continue
		}
		var texts map[string]string
		if err := json.Unmarshal(raw, &texts); err != nil || len(texts) == 0 {
			return fmt.Errorf("%s must be an object of one or more language-tag/string pairs", m)
		}
	}
	return nil
}

// decodeObject decodes a JSON object, refusing duplicate member names
// (RFC 7515 §4, RFC 7519 §4) and anything that is not an object.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	if err := checkNoDuplicates(data); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errors.New("not a JSON object")
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// checkNoDuplicates reports a duplicate member name anywhere in data.
func checkNoDuplicates(data []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("invalid JSON")
		}
		switch tok {
		case json.Delim('{'):
			names := map[string]bool{}
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					return errors.New("invalid JSON")
				}
				name := t.(string)
				if names[name] {
					return fmt.Errorf("duplicate member name %q", name)
				}
				names[name] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		}
		return err
	}
	if err := walk(); err != nil {
		return err
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// stringMember returns m[name] as a string; present reports whether the
// member exists; a present non-string is an error.
func stringMember(m map[string]json.RawMessage, name string) (s string, present bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil || strings.TrimSpace(string(raw)) == "null" {
		return "", true, fmt.Errorf("%s must be a string", name)
	}
	return s, true, nil
}

func optString(m map[string]json.RawMessage, names ...string) error {
	for _, n := range names {
		if _, _, err := stringMember(m, n); err != nil {
			return err
		}
	}
	return nil
}

func enumMember(m map[string]json.RawMessage, name string, required bool, allowed ...string) error {
	s, ok, err := stringMember(m, name)
	switch {
	case err != nil:
		return err
	case !ok && required:
		return fmt.Errorf("%s is REQUIRED", name)
	case ok && !slices.Contains(allowed, s):
		return fmt.Errorf("%s is %q, want one of %v", name, s, allowed)
	}
	return nil
}

// dateMember returns m[name] as a NumericDate (a JSON number).
func dateMember(m map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || strings.TrimSpace(string(raw)) == "null" {
		return time.Time{}, true, fmt.Errorf("%s must be a number", name)
	}
	return NumericDate(f).Time(), true, nil
}

func isBase64URL(c rune) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func intersects(a, b []string) bool {
	return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
}
