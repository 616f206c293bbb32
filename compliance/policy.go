// Package compliance decides whether a device may be trusted. Evaluate is
// a pure function of a device's snapshot, a policy and the time: it gives
// the device a state and, for every rule, what was observed, what was
// expected and whether it passed.
package compliance

import (
	"fmt"
	"slices"
	"time"

	"github.com/mdmd/mdmd"
)

// ThreatLevel is a mobile threat defense partner's verdict on a device.
type ThreatLevel string

// Threat levels, from safest to most dangerous.
const (
	ThreatSecured ThreatLevel = "secured"
	ThreatLow     ThreatLevel = "low"
	ThreatMedium  ThreatLevel = "medium"
	ThreatHigh    ThreatLevel = "high"
)

var threatRank = map[ThreatLevel]int{ThreatSecured: 0, ThreatLow: 1, ThreatMedium: 2, ThreatHigh: 3}

// ParseThreatLevel accepts only the four known levels.
func ParseThreatLevel(s string) (ThreatLevel, error) {
	l := ThreatLevel(s)
	if _, ok := threatRank[l]; !ok {
		return "", mdmd.FieldError("level", "must be secured, low, medium or high, got %q", s)
	}
	return l, nil
}

// DefaultPatchAgeDays is how old a security patch may be unless a policy
// says otherwise.
const DefaultPatchAgeDays = 90

// Policy holds the rules a device must meet. A zero value switches a rule
// off, except where noted.
type Policy struct {
	ID       string        `json:"id,omitempty"`
	Name     string        `json:"name,omitempty"`
	Platform mdmd.Platform `json:"platform,omitempty"` // empty: every platform

	MinOSVersion string `json:"min_os_version,omitempty"`
	MaxOSVersion string `json:"max_os_version,omitempty"`
	// MaxPatchAgeDays: the security patch level may be at most this many
	// days old (0: not checked; always written out, so that a policy read
	// and written back keeps 0 rather than getting the Android default).
	// PatchNotBefore (YYYY-MM-DD): it may not predate this day.
	MaxPatchAgeDays int    `json:"max_patch_age_days"`
	PatchNotBefore  string `json:"patch_not_before,omitempty"`

	BlockCompromised  bool `json:"block_compromised,omitempty"` // jailbroken or rooted
	RequirePasscode   bool `json:"require_passcode,omitempty"`
	MinPasscodeLength int  `json:"min_passcode_length,omitempty"` // enforced by the device's passcode payload
	RequireEncryption bool `json:"require_encryption,omitempty"`

	// MaxThreatLevel is the worst MTD verdict still allowed. With
	// RequireThreatData, a device without partner data, or with data
	// older than ThreatMaxAgeHours (default 24), is noncompliant.
	MaxThreatLevel    ThreatLevel `json:"max_threat_level,omitempty"`
	RequireThreatData bool        `json:"require_threat_data,omitempty"`
	ThreatMaxAgeHours int         `json:"threat_max_age_hours,omitempty"`

	RequiredProfiles []string `json:"required_profiles,omitempty"` // iOS profile identifiers

	// CheckInValidityDays: a device silent for longer is noncompliant, so
	// a device that is offline does not stay trusted.
	CheckInValidityDays int `json:"check_in_validity_days,omitempty"`

	RequireSecurePosture bool `json:"require_secure_posture,omitempty"` // Android's devicePosture SECURE

	// GraceDays: a failing device is "in grace" this long before it is
	// noncompliant. A "mark" action says the same.
	GraceDays int `json:"grace_days,omitempty"`

	// Actions are taken against a failing device, each once per episode
	// of failing, AfterDays after the episode began.
	Actions []ActionRule `json:"actions,omitempty"`
}

// Noncompliance actions.
const (
	ActionMark          = "mark"           // mark noncompliant: the end of the grace period
	ActionNotify        = "notify"         // a compliance.action event for webhooks
	ActionLock          = "lock"           // lock the device
	ActionSelectiveWipe = "selective_wipe" // remove corporate data, after an admin approves
)

// ActionRule schedules one noncompliance action.
type ActionRule struct {
	Action    string `json:"action"`
	AfterDays int    `json:"after_days"`
}

// graceDays is how long a failing device stays in grace.
func (p *Policy) graceDays() int {
	for _, a := range p.Actions {
		if a.Action == ActionMark {
			return a.AfterDays
		}
	}
	return p.GraceDays
}

// Validate checks a policy before it is stored or used.
func (p *Policy) Validate() error {
	if p.Platform != "" && !p.Platform.Valid() {
		return mdmd.FieldError("platform", "must be ios, android or empty, got %q", p.Platform)
	}
	for field, v := range map[string]string{"min_os_version": p.MinOSVersion, "max_os_version": p.MaxOSVersion} {
		if v == "" {
			continue
		}
		if _, err := parseVersion(v); err != nil {
			return mdmd.FieldError(field, "%v", err)
		}
	}
	if p.MinOSVersion != "" && p.MaxOSVersion != "" && compareVersions(p.MinOSVersion, p.MaxOSVersion) > 0 {
		return mdmd.FieldError("max_os_version", "is below min_os_version")
	}
	if p.PatchNotBefore != "" {
		if _, err := time.Parse(time.DateOnly, p.PatchNotBefore); err != nil {
			return mdmd.FieldError("patch_not_before", "must be a date like 2026-01-31")
		}
	}
	for field, v := range map[string]int{"max_patch_age_days": p.MaxPatchAgeDays, "min_passcode_length": p.MinPasscodeLength,
		"threat_max_age_hours": p.ThreatMaxAgeHours, "check_in_validity_days": p.CheckInValidityDays, "grace_days": p.GraceDays} {
		if v < 0 || v > 3650 {
			return mdmd.FieldError(field, "must be between 0 and 3650")
		}
	}
	seen := map[string]bool{}
	for _, a := range p.Actions {
		switch {
		case a.Action != ActionMark && a.Action != ActionNotify && a.Action != ActionLock && a.Action != ActionSelectiveWipe:
			return mdmd.FieldError("actions", "unknown action %q: use mark, notify, lock or selective_wipe", a.Action)
		case seen[a.Action]:
			return mdmd.FieldError("actions", "action %s is given twice", a.Action)
		case a.AfterDays < 0 || a.AfterDays > 3650:
			return mdmd.FieldError("actions", "after_days of %s must be between 0 and 3650", a.Action)
		case a.Action == ActionMark && p.GraceDays != 0 && p.GraceDays != a.AfterDays:
			return mdmd.FieldError("actions", "the mark action and grace_days disagree: give one of them")
		}
		seen[a.Action] = true
	}
	if p.MinPasscodeLength > 0 && !p.RequirePasscode {
		return mdmd.FieldError("min_passcode_length", "needs require_passcode")
	}
	if p.MaxThreatLevel != "" {
		if _, err := ParseThreatLevel(string(p.MaxThreatLevel)); err != nil {
			return mdmd.FieldError("max_threat_level", "must be secured, low, medium or high, got %q", p.MaxThreatLevel)
		}
	}
	if p.RequireThreatData && p.MaxThreatLevel == "" {
		return mdmd.FieldError("require_threat_data", "needs max_threat_level")
	}
	if slices.Contains(p.RequiredProfiles, "") {
		return mdmd.FieldError("required_profiles", "an identifier is empty")
	}
	return nil
}

// parseVersion reads a dotted numeric version such as 17.4.1 or 14.
func parseVersion(s string) ([]int, error) {
	var out []int
	n, digits := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 {
				return nil, fmt.Errorf("%q is not a version like 17.4.1", s)
			}
			out = append(out, n)
			n, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || digits >= 6 {
			return nil, fmt.Errorf("%q is not a version like 17.4.1", s)
		}
		n, digits = n*10+int(c-'0'), digits+1
	}
	return out, nil
}

// compareVersions orders two valid versions; missing parts count as 0,
// so 17 == 17.0 == 17.0.0.
func compareVersions(a, b string) int {
	va, _ := parseVersion(a)
	vb, _ := parseVersion(b)
	for i := range max(len(va), len(vb)) {
		x, y := 0, 0
		if i < len(va) {
			x = va[i]
		}
		if i < len(vb) {
			y = vb[i]
		}
		if x != y {
			return x - y
		}
	}
	return 0
}
