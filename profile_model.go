package mdmd

import (
	"encoding/json"
	"time"
)

// ProfileKind is how a profile was made: from typed settings or uploaded.
type ProfileKind string

const (
	ProfilePasscode     ProfileKind = "passcode"
	ProfileRestrictions ProfileKind = "restrictions"
	ProfileWiFi         ProfileKind = "wifi"
	ProfileVPN          ProfileKind = "vpn"
	ProfileCustom       ProfileKind = "custom" // an uploaded .mobileconfig
)

// Valid reports whether k is a known kind.
func (k ProfileKind) Valid() bool {
	switch k {
	case ProfilePasscode, ProfileRestrictions, ProfileWiFi, ProfileVPN, ProfileCustom:
		return true
	}
	return false
}

// Profile is a configuration profile mdmd installs on devices.
type Profile struct {
	ID         string          `json:"id" gorm:"column:id;primaryKey"`
	Name       string          `json:"name" gorm:"column:name"`
	Identifier string          `json:"identifier" gorm:"column:identifier"`
	Platform   Platform        `json:"platform" gorm:"column:platform"`
	Kind       ProfileKind     `json:"kind" gorm:"column:kind"`
	Settings   json.RawMessage `json:"settings,omitempty" gorm:"column:settings"`
	Payload    []byte          `json:"-" gorm:"column:payload"`
	Version    int             `json:"version" gorm:"column:version"`
	CreatedBy  string          `json:"created_by" gorm:"column:created_by"`
	CreatedAt  time.Time       `json:"created_at" gorm:"column:created_at"`
	UpdatedAt  time.Time       `json:"updated_at" gorm:"column:updated_at"`
}

// Profile assignment targets.
const (
	TargetDevice = "device"
	TargetGroup  = "group"
)

// ProfileAssignment puts a profile on a device or on every device of a group.
type ProfileAssignment struct {
	ProfileID  string    `json:"profile_id" gorm:"column:profile_id;primaryKey"`
	TargetType string    `json:"target_type" gorm:"column:target_type;primaryKey"`
	TargetID   string    `json:"target_id" gorm:"column:target_id;primaryKey"`
	CreatedAt  time.Time `json:"created_at" gorm:"column:created_at"`
}

// Device profile states.
const (
	ProfileInstalling = "installing"
	ProfileInstalled  = "installed"
	ProfileRemoving   = "removing"
	ProfileFailed     = "failed"
)

// DeviceProfile is what mdmd installed (or is installing or removing) on a
// device.
type DeviceProfile struct {
	DeviceID   string    `json:"device_id" gorm:"column:device_id;primaryKey"`
	Identifier string    `json:"identifier" gorm:"column:identifier;primaryKey"`
	ProfileID  *string   `json:"profile_id,omitempty" gorm:"column:profile_id"`
	Version    int       `json:"version" gorm:"column:version"`
	State      string    `json:"state" gorm:"column:state"`
	CommandID  string    `json:"command_id,omitempty" gorm:"column:command_id"`
	Error      string    `json:"error,omitempty" gorm:"column:error"`
	UpdatedAt  time.Time `json:"updated_at" gorm:"column:updated_at"`
}
