package mdmd

import (
	"strings"
	"time"
)

// Platform is the operating system family of a managed device.
type Platform string

const (
	PlatformIOS     Platform = "ios"
	PlatformAndroid Platform = "android"
)

// Valid reports whether p is a known platform.
func (p Platform) Valid() bool { return p == PlatformIOS || p == PlatformAndroid }

// Ownership says who owns the hardware. It decides what a wipe may remove:
// on a personal device only corporate data is ever removed.
type Ownership string

const (
	OwnershipCorporate Ownership = "corporate"
	OwnershipPersonal  Ownership = "personal"
)

// Valid reports whether o is a known ownership.
func (o Ownership) Valid() bool { return o == OwnershipCorporate || o == OwnershipPersonal }

// EnrollmentState is where a device is in its management lifecycle.
type EnrollmentState string

const (
	EnrollmentPending    EnrollmentState = "pending"    // identity issued, not yet checked in
	EnrollmentEnrolled   EnrollmentState = "enrolled"   // managed
	EnrollmentUnenrolled EnrollmentState = "unenrolled" // the device left management
	EnrollmentWiped      EnrollmentState = "wiped"      // a full or selective wipe completed
)

// Valid reports whether s is a known enrollment state.
func (s EnrollmentState) Valid() bool {
	switch s {
	case EnrollmentPending, EnrollmentEnrolled, EnrollmentUnenrolled, EnrollmentWiped:
		return true
	}
	return false
}

// Device is one managed phone or tablet.
type Device struct {
	ID       string   `json:"id" gorm:"column:id;primaryKey"`
	Platform Platform `json:"platform" gorm:"column:platform"`
	Name     string   `json:"name" gorm:"column:name"`
	// SerialNumber is empty on personal Android devices, which hide it.
	SerialNumber string `json:"serial_number" gorm:"column:serial_number"`
	// UDID identifies an iOS device; nil for Android.
	UDID *string `json:"udid,omitempty" gorm:"column:udid"`
	// AMAPIName is the Android Management API resource name
	// (enterprises/E/devices/D); nil for iOS.
	AMAPIName       *string         `json:"amapi_name,omitempty" gorm:"column:amapi_name"`
	Model           string          `json:"model" gorm:"column:model"`
	OSVersion       string          `json:"os_version" gorm:"column:os_version"`
	Ownership       Ownership       `json:"ownership" gorm:"column:ownership"`
	EnrollmentState EnrollmentState `json:"enrollment_state" gorm:"column:enrollment_state"`
	OwnerUser       string          `json:"owner_user" gorm:"column:owner_user"`
	LastSeenAt      *time.Time      `json:"last_seen_at,omitempty" gorm:"column:last_seen_at"`
	EnrolledAt      *time.Time      `json:"enrolled_at,omitempty" gorm:"column:enrolled_at"`
	CreatedAt       time.Time       `json:"created_at" gorm:"column:created_at"`
	UpdatedAt       time.Time       `json:"updated_at" gorm:"column:updated_at"`
}

// Validate checks the fields a stored device must satisfy.
func (d *Device) Validate() error {
	if !d.Platform.Valid() {
		return FieldError("platform", "must be ios or android, got %q", d.Platform)
	}
	if !d.Ownership.Valid() {
		return FieldError("ownership", "must be corporate or personal, got %q", d.Ownership)
	}
	if !d.EnrollmentState.Valid() {
		return FieldError("enrollment_state", "unknown state %q", d.EnrollmentState)
	}
	switch d.Platform {
	case PlatformIOS:
		if d.UDID == nil || strings.TrimSpace(*d.UDID) == "" {
			return FieldError("udid", "required for an iOS device")
		}
		if d.AMAPIName != nil {
			return FieldError("amapi_name", "only Android devices have one")
		}
	case PlatformAndroid:
		if d.AMAPIName == nil || !strings.HasPrefix(*d.AMAPIName, "enterprises/") {
			return FieldError("amapi_name", "required for an Android device, as enterprises/E/devices/D")
		}
		if d.UDID != nil {
			return FieldError("udid", "only iOS devices have one")
		}
	}
	if len(d.Name) > 200 || len(d.SerialNumber) > 100 || len(d.Model) > 200 || len(d.OwnerUser) > 320 {
		return FieldError("device", "a text field is too long")
	}
	return nil
}

// DeviceUpdate is a partial change to a device; nil fields stay as they are.
type DeviceUpdate struct {
	Name            *string          `json:"name,omitempty"`
	SerialNumber    *string          `json:"serial_number,omitempty"`
	Model           *string          `json:"model,omitempty"`
	OSVersion       *string          `json:"os_version,omitempty"`
	Ownership       *Ownership       `json:"ownership,omitempty"`
	EnrollmentState *EnrollmentState `json:"enrollment_state,omitempty"`
	OwnerUser       *string          `json:"owner_user,omitempty"`
	EnrolledAt      *time.Time       `json:"-"`
}

// Validate checks the values that are set.
func (u *DeviceUpdate) Validate() error {
	if u.Ownership != nil && !u.Ownership.Valid() {
		return FieldError("ownership", "must be corporate or personal, got %q", *u.Ownership)
	}
	if u.EnrollmentState != nil && !u.EnrollmentState.Valid() {
		return FieldError("enrollment_state", "unknown state %q", *u.EnrollmentState)
	}
	if u.Name != nil && len(*u.Name) > 200 {
		return FieldError("name", "at most 200 characters")
	}
	if u.OwnerUser != nil && len(*u.OwnerUser) > 320 {
		return FieldError("owner_user", "at most 320 characters")
	}
	return nil
}

// DeviceFilter selects devices for a listing. Zero fields match everything.
type DeviceFilter struct {
	Platform        Platform
	EnrollmentState EnrollmentState
	Ownership       Ownership
	OwnerUser       string
	GroupID         string
	// Query matches a substring of name, serial number, UDID, model or owner.
	Query string
	// After is the cursor: the ID of the last device of the previous page.
	After string
	Limit int
}

// Validate rejects unknown enum values so a typo never silently matches nothing.
func (f *DeviceFilter) Validate() error {
	if f.Platform != "" && !f.Platform.Valid() {
		return FieldError("platform", "must be ios or android, got %q", f.Platform)
	}
	if f.Ownership != "" && !f.Ownership.Valid() {
		return FieldError("ownership", "must be corporate or personal, got %q", f.Ownership)
	}
	if f.EnrollmentState != "" && !f.EnrollmentState.Valid() {
		return FieldError("enrollment_state", "unknown state %q", f.EnrollmentState)
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return FieldError("limit", "must be between 1 and %d", MaxPageSize)
	}
	return nil
}

// MaxPageSize bounds every listing.
const MaxPageSize = 1000

// DefaultPageSize is used when a listing asks for no limit.
const DefaultPageSize = 100

// Group is a named set of devices (a label) that policies and bulk actions target.
type Group struct {
	ID          string    `json:"id" gorm:"column:id;primaryKey"`
	Name        string    `json:"name" gorm:"column:name"`
	Description string    `json:"description" gorm:"column:description"`
	CreatedAt   time.Time `json:"created_at" gorm:"column:created_at"`
	UpdatedAt   time.Time `json:"updated_at" gorm:"column:updated_at"`
}

// Validate checks a group's name.
func (g *Group) Validate() error {
	name := strings.TrimSpace(g.Name)
	if name == "" || len(name) > 100 || name != g.Name {
		return FieldError("name", "must be 1 to 100 characters without surrounding spaces")
	}
	if len(g.Description) > 1000 {
		return FieldError("description", "at most 1000 characters")
	}
	return nil
}
