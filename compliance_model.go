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
