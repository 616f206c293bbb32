package mdmd

import "time"

// CommandStatus is where a queued command is in its lifecycle.
type CommandStatus string

const (
	// Active statuses: the command still waits for a final answer.
	CommandQueued CommandStatus = "queued" // not yet handed to the device
	CommandSent   CommandStatus = "sent"   // handed to the device, no answer yet
	CommandNotNow CommandStatus = "not_now"

	// Final statuses.
	CommandAcknowledged CommandStatus = "acknowledged"
	CommandError        CommandStatus = "error"
	CommandFormatError  CommandStatus = "format_error"
	CommandCanceled     CommandStatus = "canceled"
)

// Valid reports whether s is a known status.
func (s CommandStatus) Valid() bool {
	switch s {
	case CommandQueued, CommandSent, CommandNotNow, CommandAcknowledged,
		CommandError, CommandFormatError, CommandCanceled:
		return true
	}
	return false
}

// Final reports whether no further answer is expected for the command.
func (s CommandStatus) Final() bool {
	switch s {
	case CommandAcknowledged, CommandError, CommandFormatError, CommandCanceled:
		return true
	}
	return false
}

// Command is one instruction queued for one device. Payload is the
// platform's own encoding (an Apple command plist, an AMAPI request body);
// Result is the device's raw answer, kept as received.
type Command struct {
	ID          string        `json:"id" gorm:"column:id;primaryKey"`
	DeviceID    string        `json:"device_id" gorm:"column:device_id"`
	RequestType string        `json:"request_type" gorm:"column:request_type"`
	Payload     []byte        `json:"-" gorm:"column:payload"`
	Status      CommandStatus `json:"status" gorm:"column:status"`
	Priority    int           `json:"priority" gorm:"column:priority"`
	CreatedBy   string        `json:"created_by" gorm:"column:created_by"`
	// Deliveries counts how often the command was handed to the device.
	Deliveries int    `json:"deliveries" gorm:"column:deliveries"`
	Result     []byte `json:"-" gorm:"column:result"`
	// ExternalID is what the command became at the platform: an AMAPI
	// operation name.
	ExternalID  *string    `json:"external_id,omitempty" gorm:"column:external_id"`
	Error       string     `json:"error,omitempty" gorm:"column:error"`
	CreatedAt   time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt   time.Time  `json:"updated_at" gorm:"column:updated_at"`
	SentAt      *time.Time `json:"sent_at,omitempty" gorm:"column:sent_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty" gorm:"column:completed_at"`
}

// Validate checks a command before it is queued.
func (c *Command) Validate() error {
	if c.DeviceID == "" {
		return FieldError("device_id", "required")
	}
	if c.RequestType == "" || len(c.RequestType) > 100 {
		return FieldError("request_type", "must be 1 to 100 characters")
	}
	if c.Priority < 0 || c.Priority > 100 {
		return FieldError("priority", "must be between 0 and 100")
	}
	return nil
}

// CommandResult is a device's answer to a command.
type CommandResult struct {
	Status CommandStatus
	Raw    []byte
	Error  string
}

// CommandFilter selects commands for a listing.
type CommandFilter struct {
	DeviceID string
	Status   CommandStatus
	// After is the cursor: the ID of the last command of the previous page.
	After string
	Limit int
}
