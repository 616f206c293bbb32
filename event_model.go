package mdmd

import "time"

// Event types in the device event log.
const (
	// EventComplianceChanged: a device's compliance state changed. Data
	// is ComplianceChangedData.
	EventComplianceChanged = "compliance.changed"
	// EventThreatChanged: an MTD partner reported a new threat level.
	// Data is ThreatChangedData.
	EventThreatChanged = "threat.changed"
	// EventComplianceAction: a noncompliance action ran or awaits
	// approval; a "notify" action is only this event. Data is
	// ComplianceActionData.
	EventComplianceAction = "compliance.action"
)

// EventTypes lists every event type.
var EventTypes = []string{EventComplianceChanged, EventThreatChanged, EventComplianceAction}

// Event is one entry of the device event log. Seq orders the log and is
// each consumer's cursor; Data is the JSON of the type's data struct.
type Event struct {
	Seq      int64     `json:"seq" gorm:"column:seq;primaryKey;autoIncrement"`
	Type     string    `json:"type" gorm:"column:type"`
	DeviceID string    `json:"device_id" gorm:"column:device_id"`
	Data     RawJSON   `json:"data" gorm:"column:data"`
	At       time.Time `json:"at" gorm:"column:at"`
}

// EventDevice identifies the device an event is about, with what an
// identity provider needs to match it to its own records.
type EventDevice struct {
	DeviceID     string   `json:"device_id"`
	Platform     Platform `json:"platform"`
	Name         string   `json:"name,omitempty"`
	SerialNumber string   `json:"serial_number,omitempty"`
	OwnerUser    string   `json:"owner_user,omitempty"`
}

// ComplianceChangedData is the data of an EventComplianceChanged.
type ComplianceChangedData struct {
	EventDevice
	PreviousState string    `json:"previous_state"` // "" when the device had no state
	CurrentState  string    `json:"current_state"`
	PolicyID      string    `json:"policy_id,omitempty"`
	Reason        string    `json:"reason"`
	FailedRules   []string  `json:"failed_rules"`
	Cause         string    `json:"cause"`
	EvaluatedAt   time.Time `json:"evaluated_at"`
}

// ThreatChangedData is the data of an EventThreatChanged.
type ThreatChangedData struct {
	EventDevice
	PreviousLevel string    `json:"previous_level"` // "" when the partner had not reported
	CurrentLevel  string    `json:"current_level"`
	Source        string    `json:"source"`
	Details       RawJSON   `json:"details,omitempty"`
	ReportedAt    time.Time `json:"reported_at"`
}

// ComplianceActionData is the data of an EventComplianceAction.
type ComplianceActionData struct {
	EventDevice
	ActionID string    `json:"action_id"`
	Action   string    `json:"action"`
	State    string    `json:"state"`
	PolicyID string    `json:"policy_id"`
	Episode  time.Time `json:"episode"` // when the device began failing
	Detail   string    `json:"detail,omitempty"`
}

// NewEventDevice describes d for an event.
func NewEventDevice(d *Device) EventDevice {
	return EventDevice{DeviceID: d.ID, Platform: d.Platform, Name: d.Name, SerialNumber: d.SerialNumber, OwnerUser: d.OwnerUser}
}

// DeviceThreat is the latest verdict of a mobile-threat-defense partner
// about a device. HeartbeatAt is when the partner last vouched for it
// (a report or a heartbeat); ReportedAt when the level was last set.
type DeviceThreat struct {
	DeviceID string `json:"device_id" gorm:"column:device_id;primaryKey"`
	Level    string `json:"level" gorm:"column:level"`
	// Compromised is the partner's jailbreak / root verdict, if it gave one.
	Compromised *bool     `json:"compromised,omitempty" gorm:"column:compromised"`
	Source      string    `json:"source" gorm:"column:source"`
	Details     RawJSON   `json:"details,omitempty" gorm:"column:details"`
	ReportedBy  string    `json:"reported_by" gorm:"column:reported_by"`
	ReportedAt  time.Time `json:"reported_at" gorm:"column:reported_at"`
	HeartbeatAt time.Time `json:"heartbeat_at" gorm:"column:heartbeat_at"`
}
