package mdmd

import (
	"strings"
	"time"
)

// Bulk actions: one action on every device a filter selected. The set is
// fixed when the action is created (what a second admin approves is a list
// of devices, not a filter that may match others later), and it is sent in
// batches by whichever replica claims them.
const (
	BulkQuery         = "query"          // posture queries (iOS; Android reports by itself)
	BulkLock          = "lock"           // lock the screen
	BulkWipeSelective = "wipe_selective" // remove corporate data only
	BulkWipeFull      = "wipe_full"      // factory reset
)

// BulkActionKinds lists every bulk action.
var BulkActionKinds = []string{BulkQuery, BulkLock, BulkWipeSelective, BulkWipeFull}

// BulkActionPermission is the permission a bulk action needs: the one its
// single-device form needs.
func BulkActionPermission(action string) Permission {
	switch action {
	case BulkQuery:
		return PermCommandsQuery
	case BulkLock:
		return PermCommandsLock
	case BulkWipeSelective, BulkWipeFull:
		return PermCommandsWipe
	}
	return ""
}

// BulkNeedsApproval reports whether a bulk action waits for a second
// admin: every bulk wipe does.
func BulkNeedsApproval(action string) bool {
	return action == BulkWipeSelective || action == BulkWipeFull
}

// Bulk action states.
const (
	BulkAwaitingApproval = "awaiting_approval"
	BulkRunning          = "running"
	BulkDone             = "done"
	// BulkCancelled: its approval was rejected or expired (nothing was
	// sent), or an admin stopped it (devices not yet sent get nothing).
	BulkCancelled = "cancelled"
)

// Bulk target states: pending until a batch sends its command, then sent,
// failed (the command could not be queued) or skipped (the action does
// not apply to the device, such as a posture query to an Android device).
const (
	TargetPending = "pending"
	TargetSent    = "sent"
	TargetFailed  = "failed"
	TargetSkipped = "skipped"
)

// MaxBulkDevices bounds one bulk action.
const MaxBulkDevices = 250_000

// BulkFilter selects a bulk action's devices: the console's device list
// filters. Only enrolled devices are taken.
type BulkFilter struct {
	Query           string    `json:"q,omitempty"`
	Platform        Platform  `json:"platform,omitempty"`
	Ownership       Ownership `json:"ownership,omitempty"`
	OwnerUser       string    `json:"owner,omitempty"`
	GroupID         string    `json:"group_id,omitempty"`
	ComplianceState string    `json:"compliance,omitempty"`
}

// Console returns the console device filter of the enrolled devices the
// bulk filter selects.
func (f BulkFilter) Console() ConsoleDeviceFilter {
	return ConsoleDeviceFilter{DeviceFilter: DeviceFilter{Platform: f.Platform, Ownership: f.Ownership,
		OwnerUser: strings.TrimSpace(f.OwnerUser), GroupID: f.GroupID, Query: strings.TrimSpace(f.Query),
		EnrollmentState: EnrollmentEnrolled}, ComplianceState: f.ComplianceState, Sort: SortEnrolled}
}

// Describe renders the filter for people ("all enrolled devices" when empty).
func (f BulkFilter) Describe(groupName string) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("matching", quoteIf(f.Query))
	add("platform", string(f.Platform))
	add("ownership", string(f.Ownership))
	add("owner", f.OwnerUser)
	if f.GroupID != "" {
		if groupName == "" {
			groupName = f.GroupID
		}
		add("in group", groupName)
	}
	add("compliance", f.ComplianceState)
	if len(parts) == 0 {
		return "all enrolled devices"
	}
	return "enrolled devices, " + strings.Join(parts, ", ")
}

func quoteIf(s string) string {
	if s == "" {
		return ""
	}
	return `"` + s + `"`
}

// BulkAction is one action on a fixed set of devices.
type BulkAction struct {
	ID     string     `json:"id" gorm:"column:id;primaryKey"`
	Action string     `json:"action" gorm:"column:action"`
	Filter BulkFilter `json:"filter" gorm:"column:filter;serializer:json"`
	// Params are the action's parameters (a lock message, a wipe's mode).
	Params BulkParams `json:"params" gorm:"column:params;serializer:json"`
	Reason string     `json:"reason,omitempty" gorm:"column:reason"`
	State  string     `json:"state" gorm:"column:state"`
	// Total is how many devices the filter selected when it was created.
	Total         int        `json:"total" gorm:"column:total"`
	CreatedBy     string     `json:"created_by" gorm:"column:created_by"`
	CreatedByName string     `json:"created_by_name" gorm:"column:created_by_name"`
	CreatedAt     time.Time  `json:"created_at" gorm:"column:created_at"`
	ApprovalID    string     `json:"approval_id,omitempty" gorm:"column:approval_id"`
	StartedAt     *time.Time `json:"started_at,omitempty" gorm:"column:started_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty" gorm:"column:finished_at"`
}

// BulkParams are a bulk action's parameters.
type BulkParams struct {
	Message     string `json:"message,omitempty"`
	PhoneNumber string `json:"phone_number,omitempty"`
	// Push wakes the devices at once (default true).
	Push *bool `json:"push,omitempty"`
	// PreserveFRP keeps factory reset protection on fully wiped Android
	// devices (default true).
	PreserveFRP *bool `json:"preserve_frp,omitempty"`
}

// Validate checks a new bulk action.
func (b *BulkAction) Validate() error {
	switch {
	case BulkActionPermission(b.Action) == "":
		return FieldError("action", "must be one of %s, got %q", strings.Join(BulkActionKinds, ", "), b.Action)
	case len(b.Params.Message) > 200:
		return FieldError("message", "at most 200 characters")
	case len(b.Params.PhoneNumber) > 40:
		return FieldError("phone_number", "at most 40 characters")
	case (b.Params.Message != "" || b.Params.PhoneNumber != "") && b.Action != BulkLock:
		return FieldError("message", "a message applies to a lock only")
	case BulkNeedsApproval(b.Action) && strings.TrimSpace(b.Reason) == "":
		return FieldError("reason", "required: say why these devices are wiped")
	case len(b.Reason) > 500:
		return FieldError("reason", "at most 500 characters")
	case b.CreatedBy == "":
		return FieldError("created_by", "required")
	}
	f := b.Filter.Console()
	if err := f.Validate(); err != nil {
		return err
	}
	if len(b.Filter.OwnerUser) > 320 || len(b.Filter.GroupID) > 100 {
		return FieldError("filter", "owner or group too long")
	}
	return nil
}

// BulkTarget is one device of a bulk action.
type BulkTarget struct {
	BulkID    string `json:"-" gorm:"column:bulk_id;primaryKey"`
	DeviceID  string `json:"device_id" gorm:"column:device_id;primaryKey"`
	State     string `json:"state" gorm:"column:state"`
	CommandID string `json:"command_id,omitempty" gorm:"column:command_id"`
	Error     string `json:"error,omitempty" gorm:"column:error"`
	// DeviceName and CommandStatus are read with the target, not stored.
	DeviceName    string     `json:"device_name,omitempty" gorm:"column:device_name;->"`
	CommandStatus string     `json:"command_status,omitempty" gorm:"column:command_status;->"`
	ClaimedUntil  *time.Time `json:"-" gorm:"column:claimed_until"`
	UpdatedAt     *time.Time `json:"updated_at,omitempty" gorm:"column:updated_at"`
}

// BulkProgress counts a bulk action's devices: by target state, and the
// sent ones by where their command is.
type BulkProgress struct {
	Total   int `json:"total"`
	Pending int `json:"pending"`
	Sent    int `json:"sent"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Of the sent commands: acknowledged by the device, answered with an
	// error, and still on their way (queued, sent, or deferred).
	Acknowledged int `json:"acknowledged"`
	Errors       int `json:"command_errors"`
	InFlight     int `json:"in_flight"`
	// Untracked were sent, but their command is no longer kept (pruned,
	// or the device was deleted).
	Untracked int `json:"untracked"`
}

// Percent is how much of the action was handled (sent, failed or skipped).
func (p BulkProgress) Percent() int {
	if p.Total == 0 {
		return 100
	}
	return (p.Total - p.Pending) * 100 / p.Total
}

// BulkResult is what sending one target gave.
type BulkResult struct {
	DeviceID  string
	State     string // TargetSent, TargetFailed or TargetSkipped
	CommandID string
	Error     string
}
