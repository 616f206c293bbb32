package mdmd

import (
	"database/sql/driver"
	"fmt"
	"time"
)

// EnrollmentLink is what an admin hands to a user to enroll a device. The
// secret in its URL is stored only as a hash. A one-time link enrolls one
// device; a reusable link enrolls any number until it expires.
type EnrollmentLink struct {
	ID        string     `json:"id" gorm:"column:id;primaryKey"`
	TokenHash string     `json:"-" gorm:"column:token_hash"`
	Platform  Platform   `json:"platform" gorm:"column:platform"`
	OneTime   bool       `json:"one_time" gorm:"column:one_time"`
	Ownership Ownership  `json:"ownership" gorm:"column:ownership"`
	OwnerUser string     `json:"owner_user" gorm:"column:owner_user"`
	Uses      int        `json:"uses" gorm:"column:uses"`
	CreatedBy string     `json:"created_by" gorm:"column:created_by"`
	CreatedAt time.Time  `json:"created_at" gorm:"column:created_at"`
	ExpiresAt time.Time  `json:"expires_at" gorm:"column:expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty" gorm:"column:revoked_at"`
}

// Usable reports whether the link may start an enrollment at now.
func (l *EnrollmentLink) Usable(now time.Time) bool {
	return l.RevokedAt == nil && now.Before(l.ExpiresAt) && (!l.OneTime || l.Uses == 0)
}

// Validate checks a link before it is stored.
func (l *EnrollmentLink) Validate() error {
	if !l.Platform.Valid() {
		return FieldError("platform", "must be ios or android, got %q", l.Platform)
	}
	if !l.Ownership.Valid() {
		return FieldError("ownership", "must be corporate or personal, got %q", l.Ownership)
	}
	if len(l.OwnerUser) > 320 {
		return FieldError("owner_user", "at most 320 characters")
	}
	if len(l.TokenHash) != 64 {
		return FieldError("token_hash", "must be a hex SHA-256")
	}
	if l.ExpiresAt.IsZero() {
		return FieldError("expires_at", "required")
	}
	return nil
}

// DeviceCert is a device identity certificate issued by mdmd's CA.
type DeviceCert struct {
	Fingerprint      string     `gorm:"column:fingerprint;primaryKey"`
	Serial           string     `gorm:"column:serial"`
	Subject          string     `gorm:"column:subject"`
	NotBefore        time.Time  `gorm:"column:not_before"`
	NotAfter         time.Time  `gorm:"column:not_after"`
	EnrollmentLinkID *string    `gorm:"column:enrollment_link_id"`
	Renews           *string    `gorm:"column:renews"`
	UDID             *string    `gorm:"column:udid"`
	IssuedAt         time.Time  `gorm:"column:issued_at"`
	RevokedAt        *time.Time `gorm:"column:revoked_at"`
}

// AppleEnrollment is the Apple side of an enrolled device: the identity it
// authenticates with and where to push it.
type AppleEnrollment struct {
	DeviceID          string     `json:"device_id" gorm:"column:device_id;primaryKey"`
	UDID              string     `json:"udid" gorm:"column:udid"`
	CertFingerprint   string     `json:"cert_fingerprint" gorm:"column:cert_fingerprint"`
	EnrollmentLinkID  *string    `json:"enrollment_link_id,omitempty" gorm:"column:enrollment_link_id"`
	Topic             string     `json:"topic" gorm:"column:topic"`
	PushToken         string     `json:"-" gorm:"column:push_token"`
	PushMagic         string     `json:"-" gorm:"column:push_magic"`
	UnlockTokenSealed []byte     `json:"-" gorm:"column:unlock_token_sealed"`
	BootstrapSealed   []byte     `json:"-" gorm:"column:bootstrap_sealed"`
	TokenValid        bool       `json:"token_valid" gorm:"column:token_valid"`
	LastCheckinAt     *time.Time `json:"last_checkin_at,omitempty" gorm:"column:last_checkin_at"`
	LastPushAt        *time.Time `json:"last_push_at,omitempty" gorm:"column:last_push_at"`
	LastPushResult    string     `json:"last_push_result,omitempty" gorm:"column:last_push_result"`
	CreatedAt         time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt         time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

// AppleAuthenticate is what a device's Authenticate check-in establishes.
type AppleAuthenticate struct {
	UDID            string
	CertFingerprint string
	SerialNumber    string
	Model           string
	ProductName     string
	OSVersion       string
	DeviceName      string
}

// AppleTokenUpdate is what a TokenUpdate check-in carries.
type AppleTokenUpdate struct {
	Topic             string
	PushToken         string // hex
	PushMagic         string
	UnlockTokenSealed []byte
}

// Posture is a device's latest security-relevant state. Nil means not
// reported yet; only reported values overwrite stored ones.
type Posture struct {
	DeviceID          string    `json:"device_id" gorm:"column:device_id;primaryKey"`
	OSVersion         string    `json:"os_version,omitempty" gorm:"column:os_version"`
	BuildVersion      string    `json:"build_version,omitempty" gorm:"column:build_version"`
	SecurityPatch     string    `json:"security_patch,omitempty" gorm:"column:security_patch"`
	PasscodePresent   *bool     `json:"passcode_present,omitempty" gorm:"column:passcode_present"`
	PasscodeCompliant *bool     `json:"passcode_compliant,omitempty" gorm:"column:passcode_compliant"`
	Encrypted         *bool     `json:"encrypted,omitempty" gorm:"column:encrypted"`
	Supervised        *bool     `json:"supervised,omitempty" gorm:"column:supervised"`
	ActivationLock    *bool     `json:"activation_lock,omitempty" gorm:"column:activation_lock"`
	Compromised       *bool     `json:"compromised,omitempty" gorm:"column:compromised"`
	Details           RawJSON   `json:"details,omitempty" gorm:"column:details"`
	ObservedAt        time.Time `json:"observed_at" gorm:"column:observed_at"`
	UpdatedAt         time.Time `json:"updated_at" gorm:"column:updated_at"`
}

// Push results.
const (
	PushSent         = "sent"
	PushUnregistered = "unregistered" // APNs 410: the token is no longer valid
	PushRejected     = "rejected"     // APNs 4xx other than 410 and 429
	PushFailed       = "failed"       // gave up after retries
)

// PushRecord is the outcome of one push.
type PushRecord struct {
	ID       string    `json:"id" gorm:"column:id;primaryKey"`
	DeviceID string    `json:"device_id" gorm:"column:device_id"`
	At       time.Time `json:"at" gorm:"column:at"`
	Status   int       `json:"status" gorm:"column:status"`
	APNsID   string    `json:"apns_id,omitempty" gorm:"column:apns_id"`
	Reason   string    `json:"reason,omitempty" gorm:"column:reason"`
	Result   string    `json:"result" gorm:"column:result"`
	// Token is the push token the push went to (not stored): a 410 for an
	// old token must not invalidate a newer one.
	Token string `json:"-" gorm:"-"`
}

// AppleEnrollmentProfileID is the PayloadIdentifier of mdmd's enrollment
// profile. Removing that profile from a device removes every managed
// profile and managed app with it: mdmd's selective wipe on iOS.
const AppleEnrollmentProfileID = "io.mdmd.enrollment"

// RawJSON is JSON kept as text in the database. It scans from either
// drivers' text representation and writes as text.
type RawJSON []byte

// Scan implements sql.Scanner.
func (j *RawJSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case string:
		*j = RawJSON(v)
	case []byte:
		*j = append(RawJSON(nil), v...)
	default:
		return fmt.Errorf("RawJSON: cannot scan %T", src)
	}
	return nil
}

// Value implements driver.Valuer.
func (j RawJSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return nil, nil
	}
	return string(j), nil
}

// MarshalJSON emits the JSON as is.
func (j RawJSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps a copy of the JSON.
func (j *RawJSON) UnmarshalJSON(b []byte) error {
	*j = append(RawJSON(nil), b...)
	return nil
}
