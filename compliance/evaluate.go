package compliance

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mdmd/mdmd"
)

// State is a device's compliance state.
type State string

// Compliance states. Only StateCompliant is trusted.
const (
	StateCompliant    State = "compliant"
	StateNoncompliant State = "noncompliant"
	StateInGrace      State = "in_grace"      // failing, within the policy's grace period
	StateNotEvaluated State = "not_evaluated" // mdmd does not yet know enough about the device
	StateError        State = "error"         // the policy could not be applied
)

// Outcome is one rule's result.
type Outcome string

// Rule outcomes.
const (
	Pass          Outcome = "passed"
	Fail          Outcome = "failed"
	NotApplicable Outcome = "not_applicable"
	Unknown       Outcome = "unknown" // the device has not reported what the rule needs
)

// Rule names, as they appear in results.
const (
	RuleMinOS         = "min_os_version"
	RuleMaxOS         = "max_os_version"
	RulePatchAge      = "security_patch_age"
	RulePatchDate     = "security_patch_date"
	RuleCompromised   = "not_compromised"
	RulePasscode      = "passcode"
	RuleEncryption    = "encryption"
	RuleThreatLevel   = "threat_level"
	RuleProfiles      = "required_profiles"
	RuleCheckIn       = "check_in_validity"
	RuleSecurePosture = "secure_posture"
	RuleEnrolled      = "enrolled"
)

// Threat is the latest verdict of a mobile threat defense partner.
type Threat struct {
	Level       ThreatLevel
	Compromised *bool // the partner's jailbreak / root verdict, if it gives one
	Source      string
	ReportedAt  time.Time
}

// Snapshot is everything Evaluate knows about a device.
type Snapshot struct {
	Platform        mdmd.Platform
	EnrollmentState mdmd.EnrollmentState
	LastSeenAt      *time.Time
	Posture         *mdmd.Posture // nil until the device has reported any
	// AndroidPosture is AMAPI's securityPosture.devicePosture (SECURE,
	// POTENTIALLY_COMPROMISED, AT_RISK), empty if not reported.
	AndroidPosture string
	// Profiles holds the identifiers of installed profiles; nil means
	// not known, an empty non-nil slice means none installed.
	Profiles []string
	Threat   *Threat
	// FailingSince is when the current episode of failing began, carried
	// over from the previous evaluation; nil if the device was not failing.
	FailingSince *time.Time
}

// RuleResult is one rule's verdict with what was observed and expected.
type RuleResult struct {
	Rule     string  `json:"rule"`
	Outcome  Outcome `json:"outcome"`
	Observed string  `json:"observed,omitempty"`
	Expected string  `json:"expected,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// Evaluation is the outcome of evaluating one device.
type Evaluation struct {
	State        State        `json:"state"`
	Rules        []RuleResult `json:"rules"`
	Reason       string       `json:"reason"`
	FailingSince *time.Time   `json:"failing_since,omitempty"`
	GraceEndsAt  *time.Time   `json:"grace_ends_at,omitempty"`
	EvaluatedAt  time.Time    `json:"evaluated_at"`
}

// Failed lists the names of the rules that failed.
func (e *Evaluation) Failed() []string {
	var out []string
	for _, r := range e.Rules {
		if r.Outcome == Fail {
			out = append(out, r.Rule)
		}
	}
	return out
}

const day = 24 * time.Hour

// Evaluate applies a policy to a snapshot at a given time. It reads no
// clock and no storage, so the same inputs always give the same result.
//
// A failed rule makes the device noncompliant (in grace while the grace
// period lasts). Otherwise a rule whose data the device has not reported
// leaves it not evaluated: mdmd never vouches for what it has not seen.
// Missing partner (MTD) data counts only if the policy requires it.
func Evaluate(s Snapshot, p Policy, now time.Time) Evaluation {
	now = now.UTC()
	ev := Evaluation{EvaluatedAt: now}
	if err := p.Validate(); err != nil {
		ev.State, ev.Reason = StateError, "policy "+p.Name+" is invalid: "+err.Error()
		return ev
	}
	if p.Platform != "" && p.Platform != s.Platform {
		ev.State, ev.Reason = StateError, fmt.Sprintf("policy %s is for %s devices, not %s", p.Name, p.Platform, s.Platform)
		return ev
	}
	e := evaluator{s: s, p: p, now: now}
	e.enrolled()
	e.osVersion()
	e.patch()
	e.compromised()
	e.passcode()
	e.encryption()
	e.threat()
	e.profiles()
	e.checkIn()
	e.securePosture()
	ev.Rules = e.results

	var failed, unknown []string
	for _, r := range ev.Rules {
		switch r.Outcome {
		case Fail:
			failed = append(failed, r.Rule+": "+r.Reason)
		case Unknown:
			unknown = append(unknown, r.Rule)
		}
	}
	switch {
	case len(failed) > 0:
		since := now
		if s.FailingSince != nil && !s.FailingSince.After(now) {
			since = s.FailingSince.UTC()
		}
		ev.FailingSince = &since
		ends := since.Add(time.Duration(p.graceDays()) * day)
		ev.State, ev.Reason = StateNoncompliant, strings.Join(failed, "; ")
		// An unenrolled or wiped device gets no grace.
		if p.graceDays() > 0 && now.Before(ends) && s.EnrollmentState == mdmd.EnrollmentEnrolled {
			ev.State, ev.GraceEndsAt = StateInGrace, &ends
		}
	case len(unknown) > 0:
		ev.State, ev.Reason = StateNotEvaluated, "not yet reported: "+strings.Join(unknown, ", ")
	default:
		ev.State, ev.Reason = StateCompliant, "every rule passed"
	}
	return ev
}

type evaluator struct {
	s       Snapshot
	p       Policy
	now     time.Time
	results []RuleResult
}

func (e *evaluator) add(rule string, o Outcome, observed, expected, reason string) {
	e.results = append(e.results, RuleResult{Rule: rule, Outcome: o, Observed: observed, Expected: expected, Reason: reason})
}

func boolText(b *bool, yes, no string) string {
	switch {
	case b == nil:
		return ""
	case *b:
		return yes
	}
	return no
}

func (e *evaluator) enrolled() {
	st := e.s.EnrollmentState
	if st == mdmd.EnrollmentEnrolled {
		e.add(RuleEnrolled, Pass, string(st), "enrolled", "")
		return
	}
	e.add(RuleEnrolled, Fail, string(st), "enrolled", "the device is "+string(st))
}

func (e *evaluator) osVersion() {
	var observed string
	if e.s.Posture != nil {
		observed = e.s.Posture.OSVersion
	}
	check := func(rule, want string, bad func(c int) bool, why string) {
		if want == "" {
			return
		}
		switch {
		case observed == "":
			e.add(rule, Unknown, "", want, "the OS version has not been reported")
		case func() bool { _, err := parseVersion(observed); return err != nil }():
			e.add(rule, Fail, observed, want, "the reported OS version cannot be read")
		case bad(compareVersions(observed, want)):
			e.add(rule, Fail, observed, want, fmt.Sprintf("OS %s is %s %s", observed, why, want))
		default:
			e.add(rule, Pass, observed, want, "")
		}
	}
	check(RuleMinOS, e.p.MinOSVersion, func(c int) bool { return c < 0 }, "older than")
	check(RuleMaxOS, e.p.MaxOSVersion, func(c int) bool { return c > 0 }, "newer than")
}

func (e *evaluator) patch() {
	if e.p.MaxPatchAgeDays == 0 && e.p.PatchNotBefore == "" {
		return
	}
	var observed string
	if e.s.Posture != nil {
		observed = e.s.Posture.SecurityPatch
	}
	if e.s.Platform == mdmd.PlatformIOS && observed == "" {
		// iOS reports no patch level: its OS version is the patch level.
		if e.p.MaxPatchAgeDays > 0 {
			e.add(RulePatchAge, NotApplicable, "", "", "iOS has no separate security patch level; use min_os_version")
		}
		if e.p.PatchNotBefore != "" {
			e.add(RulePatchDate, NotApplicable, "", "", "iOS has no separate security patch level; use min_os_version")
		}
		return
	}
	patch, perr := time.Parse(time.DateOnly, observed)
	if e.p.MaxPatchAgeDays > 0 {
		want := fmt.Sprintf("at most %d days old", e.p.MaxPatchAgeDays)
		switch {
		case observed == "":
			e.add(RulePatchAge, Unknown, "", want, "the security patch level has not been reported")
		case perr != nil:
			e.add(RulePatchAge, Fail, observed, want, "the reported security patch level cannot be read")
		default:
			age := int(e.now.Sub(patch) / day)
			if age > e.p.MaxPatchAgeDays {
				e.add(RulePatchAge, Fail, observed, want, fmt.Sprintf("the security patch is %d days old", age))
			} else {
				e.add(RulePatchAge, Pass, observed, want, "")
			}
		}
	}
	if e.p.PatchNotBefore != "" {
		want := "not before " + e.p.PatchNotBefore
		notBefore, _ := time.Parse(time.DateOnly, e.p.PatchNotBefore)
		switch {
		case observed == "":
			e.add(RulePatchDate, Unknown, "", want, "the security patch level has not been reported")
		case perr != nil:
			e.add(RulePatchDate, Fail, observed, want, "the reported security patch level cannot be read")
		case patch.Before(notBefore):
			e.add(RulePatchDate, Fail, observed, want, "the security patch predates "+e.p.PatchNotBefore)
		default:
			e.add(RulePatchDate, Pass, observed, want, "")
		}
	}
}

// threatFresh reports whether the partner's data exists and is recent enough.
func (e *evaluator) threatFresh() (ok bool, why string) {
	t := e.s.Threat
	if t == nil {
		return false, "no mobile threat defense data"
	}
	maxAge := time.Duration(e.p.ThreatMaxAgeHours) * time.Hour
	if maxAge == 0 {
		maxAge = 24 * time.Hour
	}
	if e.now.Sub(t.ReportedAt) > maxAge {
		return false, fmt.Sprintf("mobile threat defense data from %s is stale", t.ReportedAt.UTC().Format(time.RFC3339))
	}
	return true, ""
}

func (e *evaluator) compromised() {
	if !e.p.BlockCompromised {
		return
	}
	const want = "not jailbroken or rooted"
	var verdict *bool
	source := ""
	switch e.s.Platform {
	case mdmd.PlatformAndroid:
		if e.s.Posture != nil && e.s.Posture.Compromised != nil {
			verdict, source = e.s.Posture.Compromised, "Android security posture"
		}
	case mdmd.PlatformIOS:
		// iOS does not report this itself; only an MTD partner can.
		if ok, why := e.threatFresh(); ok && e.s.Threat.Compromised != nil {
			verdict, source = e.s.Threat.Compromised, "mobile threat defense ("+e.s.Threat.Source+")"
		} else if !e.p.RequireThreatData {
			if why == "" {
				why = "the partner gives no jailbreak verdict"
			}
			e.add(RuleCompromised, NotApplicable, "", want, why+"; the policy does not require it")
			return
		} else if ok {
			e.add(RuleCompromised, Fail, "", want, "the partner gives no jailbreak verdict and the policy requires one")
			return
		} else {
			e.add(RuleCompromised, Fail, "", want, why+" and the policy requires it")
			return
		}
	}
	switch {
	case verdict == nil:
		e.add(RuleCompromised, Unknown, "", want, "no verdict has been reported")
	case *verdict:
		e.add(RuleCompromised, Fail, "compromised", want, source+" reports the device compromised")
	default:
		e.add(RuleCompromised, Pass, "not compromised", want, "")
	}
}

func (e *evaluator) passcode() {
	if !e.p.RequirePasscode {
		return
	}
	want := "passcode set and compliant"
	if e.p.MinPasscodeLength > 0 {
		want = fmt.Sprintf("passcode of at least %d characters, compliant", e.p.MinPasscodeLength)
	}
	var present, compliant *bool
	if e.s.Posture != nil {
		present, compliant = e.s.Posture.PasscodePresent, e.s.Posture.PasscodeCompliant
	}
	observed := strings.Trim(boolText(present, "set", "not set")+", "+boolText(compliant, "compliant", "not compliant"), ", ")
	switch {
	case present != nil && !*present:
		e.add(RulePasscode, Fail, observed, want, "no passcode is set")
	case compliant != nil && !*compliant:
		e.add(RulePasscode, Fail, observed, want, "the passcode does not meet the passcode policy")
	case present == nil || compliant == nil:
		e.add(RulePasscode, Unknown, observed, want, "the passcode state has not been reported")
	default:
		e.add(RulePasscode, Pass, observed, want, "")
	}
}

func (e *evaluator) encryption() {
	if !e.p.RequireEncryption {
		return
	}
	var enc *bool
	if e.s.Posture != nil {
		enc = e.s.Posture.Encrypted
	}
	switch {
	case enc == nil:
		e.add(RuleEncryption, Unknown, "", "encrypted", "encryption has not been reported")
	case !*enc:
		e.add(RuleEncryption, Fail, "not encrypted", "encrypted", "storage is not encrypted")
	default:
		e.add(RuleEncryption, Pass, "encrypted", "encrypted", "")
	}
}

func (e *evaluator) threat() {
	if e.p.MaxThreatLevel == "" {
		return
	}
	want := "at most " + string(e.p.MaxThreatLevel)
	ok, why := e.threatFresh()
	switch {
	case !ok && e.p.RequireThreatData:
		e.add(RuleThreatLevel, Fail, "", want, why+" and the policy requires it")
	case !ok:
		e.add(RuleThreatLevel, NotApplicable, "", want, why+"; the policy does not require it")
	case threatRank[e.s.Threat.Level] > threatRank[e.p.MaxThreatLevel]:
		e.add(RuleThreatLevel, Fail, string(e.s.Threat.Level), want,
			fmt.Sprintf("%s reports threat level %s", e.s.Threat.Source, e.s.Threat.Level))
	default:
		e.add(RuleThreatLevel, Pass, string(e.s.Threat.Level), want, "")
	}
}

func (e *evaluator) profiles() {
	if len(e.p.RequiredProfiles) == 0 {
		return
	}
	want := strings.Join(e.p.RequiredProfiles, ", ")
	if e.s.Platform != mdmd.PlatformIOS {
		e.add(RuleProfiles, NotApplicable, "", want, "profiles are an iOS concept; Android policies are checked by AMAPI")
		return
	}
	if e.s.Profiles == nil {
		e.add(RuleProfiles, Unknown, "", want, "the installed profiles have not been reported")
		return
	}
	var missing []string
	for _, id := range e.p.RequiredProfiles {
		if !slices.Contains(e.s.Profiles, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		e.add(RuleProfiles, Fail, strings.Join(e.s.Profiles, ", "), want, "missing "+strings.Join(missing, ", "))
		return
	}
	e.add(RuleProfiles, Pass, strings.Join(e.s.Profiles, ", "), want, "")
}

func (e *evaluator) checkIn() {
	if e.p.CheckInValidityDays == 0 {
		return
	}
	want := fmt.Sprintf("within the last %d days", e.p.CheckInValidityDays)
	if e.s.LastSeenAt == nil {
		e.add(RuleCheckIn, Fail, "never", want, "the device has never checked in")
		return
	}
	silent := e.now.Sub(*e.s.LastSeenAt)
	observed := e.s.LastSeenAt.UTC().Format(time.RFC3339)
	if silent > time.Duration(e.p.CheckInValidityDays)*day {
		e.add(RuleCheckIn, Fail, observed, want, fmt.Sprintf("silent for %d days", int(silent/day)))
		return
	}
	e.add(RuleCheckIn, Pass, observed, want, "")
}

func (e *evaluator) securePosture() {
	if !e.p.RequireSecurePosture {
		return
	}
	if e.s.Platform != mdmd.PlatformAndroid {
		e.add(RuleSecurePosture, NotApplicable, "", "SECURE", "device posture is reported by Android only")
		return
	}
	switch e.s.AndroidPosture {
	case "":
		e.add(RuleSecurePosture, Unknown, "", "SECURE", "the security posture has not been reported")
	case "SECURE":
		e.add(RuleSecurePosture, Pass, "SECURE", "SECURE", "")
	default:
		e.add(RuleSecurePosture, Fail, e.s.AndroidPosture, "SECURE", "Android reports the device "+e.s.AndroidPosture)
	}
}
