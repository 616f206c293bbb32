package ssf

import (
	"encoding/json"
	"strings"

	"github.com/mdmd/mdmd"
)

// Subject identifier formats of RFC 9493 and SSF §3.2 that a receiver
// may send. Only some name things mdmd has; the rest are refused.
var knownFormats = map[string]bool{
	"account": true, "email": true, "iss_sub": true, "opaque": true, "phone_number": true, "did": true, "uri": true,
	"aliases": true, "complex": true, "jwt_id": true, "saml_assertion_id": true, "ip-addresses": true,
}

// subjectKeys turns a subject a receiver adds or removes into the keys
// events are matched on: a device (its mdmd ID) and a user (the device
// owner, lower case). Accepted:
//
//   - opaque {id}: a device ID;
//   - email {email}: a user, so every device they own;
//   - iss_sub {iss, sub}: a device ID (sub) issued by this transmitter;
//     one another issuer issued is accepted but matches nothing;
//   - complex with a device member (opaque or iss_sub) and/or a user
//     member (email, opaque or iss_sub naming the owner). Other members
//     (tenant, session, …) must be well-formed and are wildcards, as SSF
//     §8.1.3.1 matches a member only one side has.
func (t *Transmitter) subjectKeys(raw json.RawMessage) (device, user string, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return "", "", mdmd.FieldError("subject", "must be a JSON object")
	}
	format, ok, err := str(m, "format")
	if err != nil || !ok {
		return "", "", mdmd.FieldError("subject.format", "required")
	}
	switch format {
	case "opaque", "iss_sub":
		device, err = t.deviceKey(m, format, "subject")
		return device, "", err
	case "email":
		user, err = userKey(m, format, "subject")
		return "", user, err
	case "complex":
		for name, rawMember := range m {
			if name == "format" {
				continue
			}
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(rawMember, &sub); err != nil || sub == nil {
				return "", "", mdmd.FieldError("subject."+name, "must be a subject identifier object")
			}
			f, ok, err := str(sub, "format")
			if err != nil || !ok || !knownFormats[f] || f == "complex" {
				return "", "", mdmd.FieldError("subject."+name+".format", "unknown subject identifier format %q", f)
			}
			switch name {
			case "device":
				if f != "opaque" && f != "iss_sub" {
					return "", "", mdmd.FieldError("subject.device.format", "a device is identified by opaque or iss_sub, not %q", f)
				}
				if device, err = t.deviceKey(sub, f, "subject.device"); err != nil {
					return "", "", err
				}
			case "user":
				if f != "email" && f != "opaque" && f != "iss_sub" {
					return "", "", mdmd.FieldError("subject.user.format", "a user is identified by email, opaque or iss_sub, not %q", f)
				}
				if user, err = userKey(sub, f, "subject.user"); err != nil {
					return "", "", err
				}
			}
		}
		if device == "" && user == "" {
			return "", "", mdmd.FieldError("subject", "a complex subject needs a device or a user member")
		}
		return device, user, nil
	}
	if knownFormats[format] {
		return "", "", mdmd.FieldError("subject.format", "subject format %q is not supported here: use opaque (device), email (user), iss_sub or complex", format)
	}
	return "", "", mdmd.FieldError("subject.format", "unknown subject identifier format %q", format)
}

func member(m map[string]json.RawMessage, key, field string) (string, error) {
	v, ok, err := str(m, key)
	if err != nil || !ok || v == "" || len(v) > 400 {
		return "", mdmd.FieldError(field+"."+key, "must be a string of 1 to 400 characters")
	}
	return v, nil
}

func (t *Transmitter) deviceKey(m map[string]json.RawMessage, format, field string) (string, error) {
	if format == "opaque" {
		return member(m, "id", field)
	}
	iss, err := member(m, "iss", field)
	if err != nil {
		return "", err
	}
	sub, err := member(m, "sub", field)
	if err != nil {
		return "", err
	}
	if strings.TrimSuffix(iss, "/") != t.issuer {
		// Someone else's identifier: kept, but it names no device here.
		return "iss_sub " + iss + " " + sub, nil
	}
	return sub, nil
}

func userKey(m map[string]json.RawMessage, format, field string) (string, error) {
	var v string
	var err error
	switch format {
	case "email":
		v, err = member(m, "email", field)
	case "opaque":
		v, err = member(m, "id", field)
	default: // iss_sub: the user as the transmitter knows them
		if _, err = member(m, "iss", field); err == nil {
			v, err = member(m, "sub", field)
		}
	}
	return strings.ToLower(v), err
}

// matches reports whether a subject row (its keys; empty is a wildcard)
// fits an event about device, owned by user.
func matches(row mdmd.SSFSubject, device, user string) bool {
	if row.DeviceKey == "" && row.UserKey == "" {
		return false
	}
	return (row.DeviceKey == "" || row.DeviceKey == device) && (row.UserKey == "" || row.UserKey == user)
}

// Subject identifiers in SETs.
type (
	opaqueID struct {
		Format string `json:"format"`
		ID     string `json:"id"`
	}
	emailID struct {
		Format string `json:"format"`
		Email  string `json:"email"`
	}
	issSubID struct {
		Format string `json:"format"`
		Iss    string `json:"iss"`
		Sub    string `json:"sub"`
	}
	complexID struct {
		Format string   `json:"format"`
		Device opaqueID `json:"device"`
		User   *emailID `json:"user,omitempty"`
	}
)

// subID is the sub_id of an event about a device in a stream's format;
// ok is false when the format cannot name it (email, for a device with
// no owner).
func (t *Transmitter) subID(format string, d mdmd.EventDevice) (any, bool) {
	switch format {
	case "email":
		if d.OwnerUser == "" {
			return nil, false
		}
		return emailID{Format: "email", Email: d.OwnerUser}, true
	case "iss_sub":
		return issSubID{Format: "iss_sub", Iss: t.issuer, Sub: d.DeviceID}, true
	case "opaque":
		return opaqueID{Format: "opaque", ID: d.DeviceID}, true
	}
	c := complexID{Format: "complex", Device: opaqueID{Format: "opaque", ID: d.DeviceID}}
	if d.OwnerUser != "" {
		c.User = &emailID{Format: "email", Email: d.OwnerUser}
	}
	return c, true
}
