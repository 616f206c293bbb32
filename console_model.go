package mdmd

import "time"

// ConsoleSession is a signed-in browser. IDHash is the SHA-256 of the
// random session ID in the cookie; the ID itself is never stored.
type ConsoleSession struct {
	IDHash    string `gorm:"column:id_hash;primaryKey"`
	UserID    string `gorm:"column:user_id"`
	CSRFToken string `gorm:"column:csrf_token"`
	// MFADone is false while the session waits for the second factor.
	MFADone    bool      `gorm:"column:mfa_done"`
	CreatedAt  time.Time `gorm:"column:created_at"`
	LastSeenAt time.Time `gorm:"column:last_seen_at"`
	ExpiresAt  time.Time `gorm:"column:expires_at"` // the absolute end
}

// AdminTOTP is a console user's TOTP second factor. SecretSealed is the
// secret sealed with the server's key; LastStep is the time step of the
// last accepted code (a code is accepted once).
type AdminTOTP struct {
	UserID       string     `gorm:"column:user_id;primaryKey"`
	SecretSealed []byte     `gorm:"column:secret_sealed"`
	ConfirmedAt  *time.Time `gorm:"column:confirmed_at"`
	LastStep     int64      `gorm:"column:last_step"`
	CreatedAt    time.Time  `gorm:"column:created_at"`
}

// Device list sort orders of the console.
const (
	SortEnrolled    = ""     // enrollment (ID) order, oldest first
	SortNewest      = "-id"  // newest first
	SortName        = "name" // by name, then ID
	NotEvaluated    = "not_evaluated"
	StaleAfter      = 7 * 24 * time.Hour // a device not seen this long is stale
	ConsoleMaxQuery = 200
)

// ConsoleDeviceFilter is the console's device listing: the API's filter,
// plus compliance state and a sort order. The cursor is opaque.
type ConsoleDeviceFilter struct {
	DeviceFilter
	ComplianceState string
	Sort            string
}

// Validate checks the filter.
func (f *ConsoleDeviceFilter) Validate() error {
	if err := f.DeviceFilter.Validate(); err != nil {
		return err
	}
	if f.ComplianceState != "" {
		ok := false
		for _, s := range ComplianceStates {
			ok = ok || s == f.ComplianceState
		}
		if !ok {
			return FieldError("compliance", "unknown compliance state %q", f.ComplianceState)
		}
	}
	switch f.Sort {
	case SortEnrolled, SortNewest, SortName:
	default:
		return FieldError("sort", "unknown sort order %q", f.Sort)
	}
	if len(f.Query) > ConsoleMaxQuery {
		return FieldError("q", "at most %d characters", ConsoleMaxQuery)
	}
	return nil
}

// ConsoleDevice is a row of the console's device list.
type ConsoleDevice struct {
	Device
	ComplianceState string `gorm:"column:compliance_state"`
}

// Count is a labelled number, for the dashboard's charts.
type Count struct {
	Label string `gorm:"column:label"`
	N     int64  `gorm:"column:n"`
}

// Dashboard is what the console's front page shows.
type Dashboard struct {
	ByPlatform   []Count // devices under management, by platform
	ByCompliance []Count // enrolled devices, by compliance state
	StaleCount   int64   // enrolled devices not seen for StaleAfter
	Stale        []Device
	Recent       []AuditEvent // the latest audit entries
}

// TimelineEntry is one line of a device's history.
type TimelineEntry struct {
	At     time.Time
	Kind   string // "audit", "compliance", "command"
	Title  string
	Detail string
}
