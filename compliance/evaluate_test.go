package compliance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }
func ago(d time.Duration) *time.Time {
	t := now.Add(-d)
	return &t
}

// healthy returns a snapshot that passes every rule of strict().
func healthy(p mdmd.Platform) Snapshot {
	s := Snapshot{Platform: p, EnrollmentState: mdmd.EnrollmentEnrolled, LastSeenAt: ago(time.Hour),
		Posture: &mdmd.Posture{OSVersion: "17.4.1", PasscodePresent: yes(), PasscodeCompliant: yes(), Encrypted: yes()},
		Threat:  &Threat{Level: ThreatSecured, Compromised: no(), Source: "mtd", ReportedAt: now.Add(-time.Hour)},
	}
	if p == mdmd.PlatformAndroid {
		s.Posture.OSVersion, s.Posture.SecurityPatch, s.Posture.Compromised = "14", "2026-11-01", no()
		s.AndroidPosture = "SECURE"
	} else {
		s.Profiles = []string{"com.example.wifi", "com.example.passcode"}
	}
	return s
}

func ruleOf(ev Evaluation, rule string) (RuleResult, bool) {
	for _, r := range ev.Rules {
		if r.Rule == rule {
			return r, true
		}
	}
	return RuleResult{}, false
}

func TestRules(t *testing.T) {
	type tc struct {
		name     string
		platform mdmd.Platform
		policy   Policy
		edit     func(*Snapshot)
		rule     string
		want     Outcome
		state    State
	}
	ios, android := mdmd.PlatformIOS, mdmd.PlatformAndroid
	tests := []tc{
		{"min OS equal passes", ios, Policy{MinOSVersion: "17.4.1"}, nil, RuleMinOS, Pass, StateCompliant},
		{"min OS shorter form equal", ios, Policy{MinOSVersion: "17.4"}, func(s *Snapshot) { s.Posture.OSVersion = "17.4.0" }, RuleMinOS, Pass, StateCompliant},
		{"min OS one patch below", ios, Policy{MinOSVersion: "17.4.2"}, nil, RuleMinOS, Fail, StateNoncompliant},
		{"min OS numeric not lexical", ios, Policy{MinOSVersion: "9.3"}, func(s *Snapshot) { s.Posture.OSVersion = "10.0" }, RuleMinOS, Pass, StateCompliant},
		{"min OS unreported", ios, Policy{MinOSVersion: "17"}, func(s *Snapshot) { s.Posture.OSVersion = "" }, RuleMinOS, Unknown, StateNotEvaluated},
		{"min OS unreadable", ios, Policy{MinOSVersion: "17"}, func(s *Snapshot) { s.Posture.OSVersion = "17.x" }, RuleMinOS, Fail, StateNoncompliant},
		{"no posture at all", ios, Policy{MinOSVersion: "17"}, func(s *Snapshot) { s.Posture = nil }, RuleMinOS, Unknown, StateNotEvaluated},
		{"max OS equal passes", ios, Policy{MaxOSVersion: "17.4.1"}, nil, RuleMaxOS, Pass, StateCompliant},
		{"max OS above", ios, Policy{MaxOSVersion: "17.4"}, nil, RuleMaxOS, Fail, StateNoncompliant},
		{"Android min API-style version", android, Policy{MinOSVersion: "13"}, nil, RuleMinOS, Pass, StateCompliant},

		{"patch exactly at max age", android, Policy{MaxPatchAgeDays: 90}, func(s *Snapshot) {
			s.Posture.SecurityPatch = now.Add(-90 * day).Format(time.DateOnly)
		}, RulePatchAge, Pass, StateCompliant},
		{"patch one day too old", android, Policy{MaxPatchAgeDays: 90}, func(s *Snapshot) {
			s.Posture.SecurityPatch = now.Add(-92 * day).Format(time.DateOnly)
		}, RulePatchAge, Fail, StateNoncompliant},
		{"patch unreported", android, Policy{MaxPatchAgeDays: 90}, func(s *Snapshot) { s.Posture.SecurityPatch = "" }, RulePatchAge, Unknown, StateNotEvaluated},
		{"patch unreadable", android, Policy{MaxPatchAgeDays: 90}, func(s *Snapshot) { s.Posture.SecurityPatch = "May 2026" }, RulePatchAge, Fail, StateNoncompliant},
		{"patch age on iOS", ios, Policy{MaxPatchAgeDays: 90}, nil, RulePatchAge, NotApplicable, StateCompliant},
		{"patch on the not-before day", android, Policy{PatchNotBefore: "2026-11-01"}, nil, RulePatchDate, Pass, StateCompliant},
		{"patch the day before", android, Policy{PatchNotBefore: "2026-11-02"}, nil, RulePatchDate, Fail, StateNoncompliant},

		{"Android rooted", android, Policy{BlockCompromised: true}, func(s *Snapshot) { s.Posture.Compromised = yes() }, RuleCompromised, Fail, StateNoncompliant},
		{"Android not rooted", android, Policy{BlockCompromised: true}, nil, RuleCompromised, Pass, StateCompliant},
		{"Android root verdict missing", android, Policy{BlockCompromised: true}, func(s *Snapshot) { s.Posture.Compromised = nil }, RuleCompromised, Unknown, StateNotEvaluated},
		{"iOS jailbroken per MTD", ios, Policy{BlockCompromised: true}, func(s *Snapshot) { s.Threat.Compromised = yes() }, RuleCompromised, Fail, StateNoncompliant},
		{"iOS clean per MTD", ios, Policy{BlockCompromised: true}, nil, RuleCompromised, Pass, StateCompliant},
		{"iOS no MTD, not required", ios, Policy{BlockCompromised: true}, func(s *Snapshot) { s.Threat = nil }, RuleCompromised, NotApplicable, StateCompliant},
		{"iOS no MTD, required", ios, Policy{BlockCompromised: true, MaxThreatLevel: ThreatHigh, RequireThreatData: true}, func(s *Snapshot) { s.Threat = nil }, RuleCompromised, Fail, StateNoncompliant},
		{"iOS stale MTD verdict ignored", ios, Policy{BlockCompromised: true}, func(s *Snapshot) {
			s.Threat.Compromised, s.Threat.ReportedAt = yes(), now.Add(-25*time.Hour)
		}, RuleCompromised, NotApplicable, StateCompliant},

		{"passcode set and compliant", ios, Policy{RequirePasscode: true, MinPasscodeLength: 6}, nil, RulePasscode, Pass, StateCompliant},
		{"passcode removed", ios, Policy{RequirePasscode: true}, func(s *Snapshot) { s.Posture.PasscodePresent, s.Posture.PasscodeCompliant = no(), no() }, RulePasscode, Fail, StateNoncompliant},
		{"passcode too short for profile", android, Policy{RequirePasscode: true, MinPasscodeLength: 8}, func(s *Snapshot) { s.Posture.PasscodeCompliant = no() }, RulePasscode, Fail, StateNoncompliant},
		{"passcode unreported", ios, Policy{RequirePasscode: true}, func(s *Snapshot) { s.Posture.PasscodeCompliant = nil }, RulePasscode, Unknown, StateNotEvaluated},
		{"passcode absent wins over unknown compliance", ios, Policy{RequirePasscode: true}, func(s *Snapshot) { s.Posture.PasscodePresent, s.Posture.PasscodeCompliant = no(), nil }, RulePasscode, Fail, StateNoncompliant},

		{"encrypted", ios, Policy{RequireEncryption: true}, nil, RuleEncryption, Pass, StateCompliant},
		{"not encrypted", android, Policy{RequireEncryption: true}, func(s *Snapshot) { s.Posture.Encrypted = no() }, RuleEncryption, Fail, StateNoncompliant},
		{"encryption unreported", android, Policy{RequireEncryption: true}, func(s *Snapshot) { s.Posture.Encrypted = nil }, RuleEncryption, Unknown, StateNotEvaluated},

		{"threat at the maximum", ios, Policy{MaxThreatLevel: ThreatLow}, func(s *Snapshot) { s.Threat.Level = ThreatLow }, RuleThreatLevel, Pass, StateCompliant},
		{"threat above the maximum", android, Policy{MaxThreatLevel: ThreatLow}, func(s *Snapshot) { s.Threat.Level = ThreatMedium }, RuleThreatLevel, Fail, StateNoncompliant},
		{"threat high, max secured", ios, Policy{MaxThreatLevel: ThreatSecured}, func(s *Snapshot) { s.Threat.Level = ThreatHigh }, RuleThreatLevel, Fail, StateNoncompliant},
		{"no MTD data, not required", ios, Policy{MaxThreatLevel: ThreatLow}, func(s *Snapshot) { s.Threat = nil }, RuleThreatLevel, NotApplicable, StateCompliant},
		{"no MTD data, required", ios, Policy{MaxThreatLevel: ThreatLow, RequireThreatData: true}, func(s *Snapshot) { s.Threat = nil }, RuleThreatLevel, Fail, StateNoncompliant},
		{"MTD data at the age limit", ios, Policy{MaxThreatLevel: ThreatLow, RequireThreatData: true, ThreatMaxAgeHours: 6}, func(s *Snapshot) {
			s.Threat.ReportedAt = now.Add(-6 * time.Hour)
		}, RuleThreatLevel, Pass, StateCompliant},
		{"MTD data past the age limit", ios, Policy{MaxThreatLevel: ThreatLow, RequireThreatData: true, ThreatMaxAgeHours: 6}, func(s *Snapshot) {
			s.Threat.ReportedAt = now.Add(-6*time.Hour - time.Second)
		}, RuleThreatLevel, Fail, StateNoncompliant},

		{"profiles installed", ios, Policy{RequiredProfiles: []string{"com.example.wifi"}}, nil, RuleProfiles, Pass, StateCompliant},
		{"profile missing", ios, Policy{RequiredProfiles: []string{"com.example.vpn"}}, nil, RuleProfiles, Fail, StateNoncompliant},
		{"no profiles installed", ios, Policy{RequiredProfiles: []string{"com.example.vpn"}}, func(s *Snapshot) { s.Profiles = []string{} }, RuleProfiles, Fail, StateNoncompliant},
		{"profiles unreported", ios, Policy{RequiredProfiles: []string{"com.example.vpn"}}, func(s *Snapshot) { s.Profiles = nil }, RuleProfiles, Unknown, StateNotEvaluated},
		{"profiles on Android", android, Policy{RequiredProfiles: []string{"com.example.vpn"}}, nil, RuleProfiles, NotApplicable, StateCompliant},

		{"checked in at the limit", ios, Policy{CheckInValidityDays: 7}, func(s *Snapshot) { s.LastSeenAt = ago(7 * day) }, RuleCheckIn, Pass, StateCompliant},
		{"silent past the limit", android, Policy{CheckInValidityDays: 7}, func(s *Snapshot) { s.LastSeenAt = ago(7*day + time.Second) }, RuleCheckIn, Fail, StateNoncompliant},
		{"never checked in", ios, Policy{CheckInValidityDays: 7}, func(s *Snapshot) { s.LastSeenAt = nil }, RuleCheckIn, Fail, StateNoncompliant},

		{"Android posture SECURE", android, Policy{RequireSecurePosture: true}, nil, RuleSecurePosture, Pass, StateCompliant},
		{"Android posture at risk", android, Policy{RequireSecurePosture: true}, func(s *Snapshot) { s.AndroidPosture = "AT_RISK" }, RuleSecurePosture, Fail, StateNoncompliant},
		{"Android posture unreported", android, Policy{RequireSecurePosture: true}, func(s *Snapshot) { s.AndroidPosture = "" }, RuleSecurePosture, Unknown, StateNotEvaluated},
		{"posture rule on iOS", ios, Policy{RequireSecurePosture: true}, nil, RuleSecurePosture, NotApplicable, StateCompliant},

		{"unenrolled device", ios, Policy{}, func(s *Snapshot) { s.EnrollmentState = mdmd.EnrollmentUnenrolled }, RuleEnrolled, Fail, StateNoncompliant},
		{"wiped device gets no grace", ios, Policy{GraceDays: 3}, func(s *Snapshot) { s.EnrollmentState = mdmd.EnrollmentWiped }, RuleEnrolled, Fail, StateNoncompliant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy(tt.platform)
			if tt.edit != nil {
				tt.edit(&s)
			}
			ev := Evaluate(s, tt.policy, now)
			r, ok := ruleOf(ev, tt.rule)
			if !ok {
				t.Fatalf("rule %s missing from %+v", tt.rule, ev.Rules)
			}
			if r.Outcome != tt.want {
				t.Errorf("%s = %s (%s), want %s", tt.rule, r.Outcome, r.Reason, tt.want)
			}
			if ev.State != tt.state {
				t.Errorf("state = %s (%s), want %s", ev.State, ev.Reason, tt.state)
			}
			if r.Expected == "" && r.Outcome != NotApplicable {
				t.Errorf("%s gives no expected value", tt.rule)
			}
			if r.Outcome == Fail && (r.Reason == "" || !strings.Contains(ev.Reason, r.Reason)) {
				t.Errorf("failed rule's reason %q not in the state's reason %q", r.Reason, ev.Reason)
			}
			if ev.State == StateCompliant && ev.FailingSince != nil {
				t.Errorf("compliant device has failing_since %v", ev.FailingSince)
			}
		})
	}
}

// A rule switched off in the policy does not appear in the results.
func TestOnlyEnabledRulesReported(t *testing.T) {
	ev := Evaluate(healthy(mdmd.PlatformIOS), Policy{MinOSVersion: "16"}, now)
	var names []string
	for _, r := range ev.Rules {
		names = append(names, r.Rule)
	}
	if got := strings.Join(names, ","); got != RuleEnrolled+","+RuleMinOS {
		t.Fatalf("rules = %s", got)
	}
}

func TestGracePeriod(t *testing.T) {
	p := Policy{MinOSVersion: "18", GraceDays: 3}
	tests := []struct {
		name    string
		since   *time.Time
		want    State
		wantEnd *time.Time
	}{
		{"first failure starts grace now", nil, StateInGrace, ptr(now.Add(3 * day))},
		{"grace running", ago(2 * day), StateInGrace, ptr(now.Add(day))},
		{"grace ends exactly now", ago(3 * day), StateNoncompliant, nil},
		{"grace over", ago(4 * day), StateNoncompliant, nil},
		{"a future start is not trusted", ptr(now.Add(day)), StateInGrace, ptr(now.Add(3 * day))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy(mdmd.PlatformIOS)
			s.FailingSince = tt.since
			ev := Evaluate(s, p, now)
			if ev.State != tt.want {
				t.Fatalf("state = %s, want %s", ev.State, tt.want)
			}
			if (ev.GraceEndsAt == nil) != (tt.wantEnd == nil) || (tt.wantEnd != nil && !ev.GraceEndsAt.Equal(*tt.wantEnd)) {
				t.Errorf("grace ends %v, want %v", ev.GraceEndsAt, tt.wantEnd)
			}
			if ev.FailingSince == nil {
				t.Fatal("failing_since not set")
			}
			if tt.since != nil && !tt.since.After(now) && !ev.FailingSince.Equal(*tt.since) {
				t.Errorf("failing_since = %v, want the episode's start %v", ev.FailingSince, tt.since)
			}
		})
	}
	// Once it passes again, the episode ends.
	s := healthy(mdmd.PlatformIOS)
	s.FailingSince = ago(day)
	if ev := Evaluate(s, Policy{MinOSVersion: "17", GraceDays: 3}, now); ev.State != StateCompliant || ev.FailingSince != nil {
		t.Errorf("recovered device: %s since %v", ev.State, ev.FailingSince)
	}
}

func ptr[T any](v T) *T { return &v }

// Silence alone turns a device noncompliant as time passes: nothing about
// the device has to change.
func TestStalenessWithoutContact(t *testing.T) {
	s := healthy(mdmd.PlatformAndroid)
	p := Policy{CheckInValidityDays: 7, MaxPatchAgeDays: 90}
	if ev := Evaluate(s, p, now); ev.State != StateCompliant {
		t.Fatalf("today: %s (%s)", ev.State, ev.Reason)
	}
	later := Evaluate(s, p, now.Add(8*day))
	if later.State != StateNoncompliant {
		t.Fatalf("8 days later: %s", later.State)
	}
	if got := strings.Join(later.Failed(), ","); got != RuleCheckIn {
		t.Errorf("failed rules = %s, want %s", got, RuleCheckIn)
	}
	if muchLater := Evaluate(s, p, now.Add(120*day)); strings.Join(muchLater.Failed(), ",") != RulePatchAge+","+RuleCheckIn {
		t.Errorf("120 days later failed = %v", muchLater.Failed())
	}
}

func TestEvaluateIsPure(t *testing.T) {
	s := healthy(mdmd.PlatformIOS)
	p := Policy{MinOSVersion: "18", RequirePasscode: true, GraceDays: 1}
	a, _ := json.Marshal(Evaluate(s, p, now))
	b, _ := json.Marshal(Evaluate(s, p, now))
	if string(a) != string(b) {
		t.Fatalf("two evaluations differ:\n%s\n%s", a, b)
	}
}

func TestInvalidPolicyIsAnError(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		field  string
	}{
		{"bad min version", Policy{MinOSVersion: "seventeen"}, "min_os_version"},
		{"empty version part", Policy{MaxOSVersion: "17..1"}, "max_os_version"},
		{"min above max", Policy{MinOSVersion: "18", MaxOSVersion: "17.9"}, "max_os_version"},
		{"bad date", Policy{PatchNotBefore: "01/02/2026"}, "patch_not_before"},
		{"negative days", Policy{MaxPatchAgeDays: -1}, "max_patch_age_days"},
		{"unknown threat level", Policy{MaxThreatLevel: "critical"}, "max_threat_level"},
		{"threat data without level", Policy{RequireThreatData: true}, "require_threat_data"},
		{"length without passcode", Policy{MinPasscodeLength: 6}, "min_passcode_length"},
		{"unknown platform", Policy{Platform: "windows"}, "platform"},
		{"empty profile identifier", Policy{RequiredProfiles: []string{""}}, "required_profiles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if !mdmd.IsCode(err, mdmd.EInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want an invalid %s", err, tt.field)
			}
			if ev := Evaluate(healthy(mdmd.PlatformIOS), tt.policy, now); ev.State != StateError || len(ev.Rules) != 0 {
				t.Errorf("Evaluate with an invalid policy: %s with %d rules", ev.State, len(ev.Rules))
			}
		})
	}
	ev := Evaluate(healthy(mdmd.PlatformIOS), Policy{Name: "droids", Platform: mdmd.PlatformAndroid}, now)
	if ev.State != StateError {
		t.Errorf("Android policy on an iPhone: %s", ev.State)
	}
}

func TestParseThreatLevel(t *testing.T) {
	for _, s := range []string{"secured", "low", "medium", "high"} {
		if l, err := ParseThreatLevel(s); err != nil || string(l) != s {
			t.Errorf("ParseThreatLevel(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "HIGH", "critical", "none"} {
		if _, err := ParseThreatLevel(s); !mdmd.IsCode(err, mdmd.EInvalid) {
			t.Errorf("ParseThreatLevel(%q) accepted", s)
		}
	}
}
