package ssfrx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Subject is a decoded subject identifier: an RFC 9493 format (account,
// email, iss_sub, opaque, phone_number, did, uri, aliases), an SSF 1.0 §3.4
// format (jwt_id, saml_assertion_id, ip-addresses) or an SSF complex subject
// (format "complex", SSF 1.0 §3.3). Only the fields of Format are set.
type Subject struct {
	Format string

	URI         string    // account (an acct: URI), uri
	Email       string    // email
	PhoneNumber string    // phone_number (E.164)
	Iss, Sub    string    // iss_sub; Iss also for jwt_id
	ID          string    // opaque
	URL         string    // did
	JTI         string    // jwt_id
	Issuer      string    // saml_assertion_id
	AssertionID string    // saml_assertion_id
	IPAddresses []string  // ip-addresses
	Identifiers []Subject // aliases

	// Complex subject members (SSF 1.0 §3.3); Other holds additional names.
	User, Device, Session, Application, Tenant, OrgUnit, Group *Subject
	Other                                                      map[string]*Subject
}

// simple formats: member name -> pointer to the field in Subject, all
// REQUIRED non-empty strings.
func (s *Subject) stringFields() map[string]*string {
	switch s.Format {
	case "account", "uri":
		return map[string]*string{"uri": &s.URI}
	case "email":
		return map[string]*string{"email": &s.Email}
	case "phone_number":
		return map[string]*string{"phone_number": &s.PhoneNumber}
	case "iss_sub":
		return map[string]*string{"iss": &s.Iss, "sub": &s.Sub}
	case "opaque":
		return map[string]*string{"id": &s.ID}
	case "did":
		return map[string]*string{"url": &s.URL}
	case "jwt_id":
		return map[string]*string{"iss": &s.Iss, "jti": &s.JTI}
	case "saml_assertion_id":
		return map[string]*string{"issuer": &s.Issuer, "assertion_id": &s.AssertionID}
	}
	return nil
}

func (s *Subject) complexMembers() map[string]**Subject {
	return map[string]**Subject{
		"user": &s.User, "device": &s.Device, "session": &s.Session, "application": &s.Application,
		"tenant": &s.Tenant, "org_unit": &s.OrgUnit, "group": &s.Group,
	}
}

// ParseSubject decodes and validates a subject identifier. Unknown formats,
// missing or empty required members and members the format does not describe
// (RFC 9493 §3) are errors.
func ParseSubject(raw json.RawMessage) (*Subject, error) {
	return parseSubject(raw, nil, true)
}

// parseSubject parses raw; critical lists complex member names the receiver
// must understand (critical_subject_members); allowComplex is false inside a
// complex subject or an aliases list.
func parseSubject(raw json.RawMessage, critical []string, allowComplex bool) (*Subject, error) {
	m, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	format, ok, err := stringMember(m, "format")
	if err != nil || !ok || format == "" {
		return nil, errors.New(`subject identifier without a string "format"`)
	}
	s := &Subject{Format: format}
	if fields := s.stringFields(); fields != nil {
		for name := range m {
			if _, ok := fields[name]; !ok && name != "format" {
				return nil, fmt.Errorf("member %q is not described by format %q", name, format)
			}
		}
		for name, dst := range fields {
			v, ok, err := stringMember(m, name)
			if err != nil || !ok || v == "" {
				return nil, fmt.Errorf("format %q requires a non-empty string %q", format, name)
			}
			*dst = v
		}
		return s, s.checkValues()
	}
	switch format {
	case "aliases":
		if err := onlyMembers(m, "format", "identifiers"); err != nil {
			return nil, err
		}
		var ids []json.RawMessage
		if err := json.Unmarshal(m["identifiers"], &ids); err != nil || len(ids) == 0 {
			return nil, errors.New(`aliases requires a non-empty "identifiers" array`)
		}
		for _, id := range ids {
			sub, err := parseSubject(id, nil, false)
			if err != nil {
				return nil, fmt.Errorf("aliases: %w", err)
			}
			if sub.Format == "aliases" {
				return nil, errors.New("aliases identifiers MUST NOT be nested")
			}
			s.Identifiers = append(s.Identifiers, *sub)
		}
	case "ip-addresses":
		if err := onlyMembers(m, "format", "ip-addresses"); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(m["ip-addresses"], &s.IPAddresses); err != nil || len(s.IPAddresses) == 0 {
			return nil, errors.New(`ip-addresses requires a non-empty "ip-addresses" array of strings`)
		}
		for _, a := range s.IPAddresses {
			if _, err := netip.ParseAddr(a); err != nil {
				return nil, fmt.Errorf("ip-addresses: %q is not an IP address", a)
			}
		}
	case "complex":
		if !allowComplex {
			return nil, errors.New("a complex subject cannot be nested")
		}
		known := s.complexMembers()
		for name, v := range m {
			if name == "format" {
				continue
			}
			sub, err := parseSubject(v, nil, false)
			if err != nil {
				return nil, fmt.Errorf("complex member %q: %w", name, err)
			}
			if dst, ok := known[name]; ok {
				*dst = sub
				continue
			}
			if slices.Contains(critical, name) {
				return nil, fmt.Errorf("complex member %q is critical and not understood by this receiver", name)
			}
			if s.Other == nil {
				s.Other = map[string]*Subject{}
			}
			s.Other[name] = sub
		}
		if len(m) < 2 {
			return nil, errors.New("a complex subject needs at least one member")
		}
	default:
		return nil, fmt.Errorf("unknown subject identifier format %q", format)
	}
	return s, nil
}

func onlyMembers(m map[string]json.RawMessage, allowed ...string) error {
	for name := range m {
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("member %q is not described by format %q", name, strings.Trim(string(m["format"]), `"`))
		}
	}
	return nil
}

// checkValues validates the syntax the formats prescribe for their values.
func (s *Subject) checkValues() error {
	switch s.Format {
	case "account":
		if !strings.HasPrefix(s.URI, "acct:") {
			return fmt.Errorf("account uri %q is not an acct: URI", s.URI)
		}
	case "uri":
		if u, err := url.Parse(s.URI); err != nil || u.Scheme == "" {
			return fmt.Errorf("uri %q is not an absolute URI", s.URI)
		}
	case "email":
		if a, err := mail.ParseAddress(s.Email); err != nil || a.Address != s.Email {
			return fmt.Errorf("email %q is not an addr-spec", s.Email)
		}
	case "phone_number":
		if !isE164(s.PhoneNumber) {
			return fmt.Errorf("phone_number %q is not in E.164 format", s.PhoneNumber)
		}
	case "did":
		if !strings.HasPrefix(s.URL, "did:") {
			return fmt.Errorf("did url %q is not a DID URL", s.URL)
		}
	}
	return nil
}

func isE164(p string) bool {
	digits := strings.TrimPrefix(p, "+")
	if digits == p || len(digits) < 2 || len(digits) > 15 || digits[0] == '0' {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// MarshalJSON encodes the subject identifier with only the members of its
// format, so a Subject can be passed to AddSubject and RemoveSubject.
func (s Subject) MarshalJSON() ([]byte, error) {
	m := map[string]any{"format": s.Format}
	for name, p := range s.stringFields() {
		m[name] = *p
	}
	switch s.Format {
	case "aliases":
		m["identifiers"] = s.Identifiers
	case "ip-addresses":
		m["ip-addresses"] = s.IPAddresses
	case "complex":
		for name, p := range s.complexMembers() {
			if *p != nil {
				m[name] = *p
			}
		}
		for name, sub := range s.Other {
			m[name] = sub
		}
	}
	return json.Marshal(m)
}
