package mdmd

import "time"

// Kinds of destructive action that need a second admin's approval.
const (
	// ApprovalDeviceWipeFull is a full wipe (factory reset) of one device.
	ApprovalDeviceWipeFull = "device.wipe.full"
	// ApprovalGroupWipe is a bulk wipe, selective or full, of a group's devices.
	ApprovalGroupWipe = "group.wipe"
	// ApprovalBulkWipe is a wipe, selective or full, of the devices a bulk
	// action fixed when it was requested.
	ApprovalBulkWipe = "bulk.wipe"
)

// Approval states. A request is pending until a second admin approves or
// rejects it, or until it expires; an approved action that could not be
// carried out ends failed.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalExpired  = "expired"
	ApprovalFailed   = "failed"
)

// ApprovalStates lists every approval state.
var ApprovalStates = []string{ApprovalPending, ApprovalApproved, ApprovalRejected, ApprovalExpired, ApprovalFailed}

// DefaultApprovalTTL is how long a request waits for its decision.
const DefaultApprovalTTL = 24 * time.Hour

// Approval is a request for a destructive action that is carried out only
// once a second admin approves it. The requester can never approve their
// own request, and the pending → approved move is one conditional update,
// so of two concurrent approvals exactly one carries the action out.
type Approval struct {
	ID         string  `json:"id" gorm:"column:id;primaryKey"`
	Kind       string  `json:"kind" gorm:"column:kind"`
	TargetType string  `json:"target_type" gorm:"column:target_type"`
	TargetID   string  `json:"target_id" gorm:"column:target_id"`
	Params     RawJSON `json:"params,omitempty" gorm:"column:params"`
	Reason     string  `json:"reason" gorm:"column:reason"`
	// RequestedBy is the requesting principal's ID (admin user or token).
	RequestedBy     string `json:"requested_by" gorm:"column:requested_by"`
	RequestedByName string `json:"requested_by_name" gorm:"column:requested_by_name"`
	// RequestedByPerson is the admin user behind the request, whichever
	// credential they used: nobody approves their own request.
	RequestedByPerson string     `json:"requested_by_person,omitempty" gorm:"column:requested_by_person"`
	RequestedAt       time.Time  `json:"requested_at" gorm:"column:requested_at"`
	ExpiresAt         time.Time  `json:"expires_at" gorm:"column:expires_at"`
	State             string     `json:"state" gorm:"column:state"`
	DecidedBy         string     `json:"decided_by,omitempty" gorm:"column:decided_by"`
	DecidedByName     string     `json:"decided_by_name,omitempty" gorm:"column:decided_by_name"`
	DecidedAt         *time.Time `json:"decided_at,omitempty" gorm:"column:decided_at"`
	DecisionReason    string     `json:"decision_reason,omitempty" gorm:"column:decision_reason"`
	// Result is what carrying the action out gave (command IDs, devices
	// reached, or the error).
	Result RawJSON `json:"result,omitempty" gorm:"column:result"`
}

// ApprovalDecision is a second admin's decision on a pending approval.
type ApprovalDecision struct {
	// State is ApprovalApproved or ApprovalRejected.
	State    string
	By       string // the deciding principal's ID
	ByPerson string // the person behind it (mdmd.Principal.Person)
	ByName   string
	Reason   string
	At       time.Time
}

// ApprovalTargetType returns the target type a kind applies to, or "" for
// an unknown kind.
func ApprovalTargetType(kind string) string {
	switch kind {
	case ApprovalDeviceWipeFull:
		return "device"
	case ApprovalGroupWipe:
		return "group"
	case ApprovalBulkWipe:
		return "bulk_action"
	}
	return ""
}

// Validate checks a new approval request before it is stored.
func (a *Approval) Validate() error {
	tt := ApprovalTargetType(a.Kind)
	switch {
	case tt == "":
		return FieldError("kind", "unknown approval kind %q", a.Kind)
	case a.TargetType != tt:
		return FieldError("target_type", "%s applies to a %s, not %q", a.Kind, tt, a.TargetType)
	case a.TargetID == "":
		return FieldError("target_id", "required")
	case a.Reason == "" || len(a.Reason) > 500:
		return FieldError("reason", "required, at most 500 characters")
	case a.RequestedBy == "":
		return FieldError("requested_by", "required")
	case a.ExpiresAt.IsZero() || !a.ExpiresAt.After(a.RequestedAt):
		return FieldError("expires_at", "must be after the request")
	}
	return nil
}
