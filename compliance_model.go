package mdmd

import "time"

// DeviceCompliance is a device's stored compliance state. Rules is the
// JSON of every rule's result; the compliance package gives both meaning.
type DeviceCompliance struct {
	DeviceID     string     `json:"device_id" gorm:"column:device_id;primaryKey"`
	State        string     `json:"state" gorm:"column:state"`
	PolicyID     string     `json:"policy_id,omitempty" gorm:"column:policy_id"`
	Reason       string     `json:"reason" gorm:"column:reason"`
	Rules        RawJSON    `json:"rules" gorm:"column:rules"`
	FailingSince *time.Time `json:"failing_since,omitempty" gorm:"column:failing_since"`
	GraceEndsAt  *time.Time `json:"grace_ends_at,omitempty" gorm:"column:grace_ends_at"`
	EvaluatedAt  time.Time  `json:"evaluated_at" gorm:"column:evaluated_at"`
	ChangedAt    time.Time  `json:"changed_at" gorm:"column:changed_at"`
}

// ComplianceChange is one change of a device's compliance state. Seq
// orders the feed and is its resumable cursor.
type ComplianceChange struct {
	Seq       int64     `json:"seq" gorm:"column:seq;primaryKey;autoIncrement"`
	DeviceID  string    `json:"device_id" gorm:"column:device_id"`
	FromState string    `json:"from_state" gorm:"column:from_state"`
	ToState   string    `json:"to_state" gorm:"column:to_state"`
	PolicyID  string    `json:"policy_id,omitempty" gorm:"column:policy_id"`
	Reason    string    `json:"reason" gorm:"column:reason"`
	Rules     RawJSON   `json:"rules" gorm:"column:rules"`
	Cause     string    `json:"cause" gorm:"column:cause"`
	At        time.Time `json:"at" gorm:"column:at"`
}

// ComplianceStates are the states a device can be in.
var ComplianceStates = []string{"compliant", "noncompliant", "in_grace", "not_evaluated", "error"}

// CompliancePolicy is a stored compliance policy. Rules is the JSON of the
// compliance package's Policy; storage does not interpret it.
type CompliancePolicy struct {
	ID        string    `json:"id" gorm:"column:id;primaryKey"`
	Name      string    `json:"name" gorm:"column:name"`
	Platform  Platform  `json:"platform,omitempty" gorm:"column:platform"`
	Rules     RawJSON   `json:"rules" gorm:"column:rules"`
	IsDefault bool      `json:"is_default" gorm:"column:is_default"`
	Version   int       `json:"version" gorm:"column:version"`
	CreatedAt time.Time `json:"created_at" gorm:"column:created_at"`
	UpdatedAt time.Time `json:"updated_at" gorm:"column:updated_at"`
}

// CompliancePolicyGroup assigns a policy to a group. Among a device's
// groups, the assignment with the lowest priority number wins.
type CompliancePolicyGroup struct {
	PolicyID string `json:"policy_id" gorm:"column:policy_id;primaryKey"`
	GroupID  string `json:"group_id" gorm:"column:group_id;primaryKey"`
	Priority int    `json:"priority" gorm:"column:priority"`
}

// ComplianceInput is everything stored that a device's evaluation reads,
// gathered for many devices at once.
type ComplianceInput struct {
	Device  Device
	Posture *Posture // nil until the device reports any
	// Profiles lists the identifiers of installed profiles (iOS); nil on
	// platforms without profiles.
	Profiles []string
	Threat   *DeviceThreat     // nil without MTD data
	Current  *DeviceCompliance // nil if never evaluated
	Policy   *CompliancePolicy // nil if no policy applies
}

// ComplianceRecorded says what storing one evaluation did.
type ComplianceRecorded struct {
	Previous string // the stored state before, "" if none
	Changed  bool   // the state changed (and the change was logged)
	Stale    bool   // a newer evaluation was stored meanwhile: nothing written
}

// DirtyMark is a claimed mark of a device whose inputs changed.
type DirtyMark struct {
	DeviceID string `gorm:"column:device_id"`
	Version  int64  `gorm:"column:version"`
}

// Compliance action states.
const (
	ActionRunning         = "running"          // claimed, being carried out
	ActionPendingApproval = "pending_approval" // a wipe waiting for an admin
	ActionDone            = "done"
	ActionRejected        = "rejected"  // an admin refused the wipe
	ActionFailed          = "failed"    // the command could not be queued
	ActionCancelled       = "cancelled" // the episode ended before approval
)

// ComplianceAction is one noncompliance action against a device in one
// episode of failing (Episode is when it began). The device, episode and
// action are unique, so each action runs once per episode.
type ComplianceAction struct {
	ID        string    `json:"id" gorm:"column:id;primaryKey"`
	DeviceID  string    `json:"device_id" gorm:"column:device_id"`
	Episode   time.Time `json:"episode" gorm:"column:episode"`
	Action    string    `json:"action" gorm:"column:action"`
	PolicyID  string    `json:"policy_id" gorm:"column:policy_id"`
	State     string    `json:"state" gorm:"column:state"`
	Detail    string    `json:"detail,omitempty" gorm:"column:detail"`
	CommandID string    `json:"command_id,omitempty" gorm:"column:command_id"`
	DecidedBy string    `json:"decided_by,omitempty" gorm:"column:decided_by"`
	CreatedAt time.Time `json:"created_at" gorm:"column:created_at"`
	UpdatedAt time.Time `json:"updated_at" gorm:"column:updated_at"`
}

// FailingDevice is a device in an episode of failing, as the action
// scheduler sees it.
type FailingDevice struct {
	DeviceID     string    `gorm:"column:device_id"`
	PolicyID     string    `gorm:"column:policy_id"`
	State        string    `gorm:"column:state"`
	FailingSince time.Time `gorm:"column:failing_since"`
}
