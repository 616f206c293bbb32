// Package commands is mdmd's catalogue of device commands: typed Apple MDM
// commands encoded as the plists devices expect (never hand-written
// strings), the parsing of their results into posture, and the service that
// queues a command and wakes the device.
package commands

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
)

// AppleCommand is one typed Apple MDM command.
type AppleCommand interface {
	// RequestType is the command's RequestType.
	RequestType() string
	// validate checks the command's parameters.
	validate() error
}

// Request carries a command's RequestType on the wire.
type Request struct {
	RequestType string
}

// DeviceInformation queries device attributes. Queries empty means
// DefaultQueries.
type DeviceInformation struct {
	Request
	Queries []string
}

// DefaultQueries are what mdmd asks for to keep inventory and posture.
var DefaultQueries = []string{"UDID", "DeviceName", "OSVersion", "BuildVersion", "ModelName", "Model", "ProductName",
	"SerialNumber", "DeviceCapacity", "AvailableDeviceCapacity", "IsSupervised", "IsActivationLockEnabled",
	"IsDeviceLocatorServiceEnabled", "IsCloudBackupEnabled", "WiFiMAC", "BluetoothMAC"}

// SecurityInfo queries passcode, encryption and management status.
type SecurityInfo struct{ Request }

// ProfileList lists installed configuration profiles.
type ProfileList struct {
	Request
	ManagedOnly bool `plist:",omitempty"`
}

// InstalledApplicationList lists installed apps.
type InstalledApplicationList struct {
	Request
	ManagedAppsOnly bool `plist:",omitempty"`
}

// CertificateList lists installed certificates.
type CertificateList struct {
	Request
	ManagedOnly bool `plist:",omitempty"`
}

// DeviceLock locks the device, with an optional lock-screen message and
// phone number (and a PIN, used by macOS).
type DeviceLock struct {
	Request
	Message     string `plist:",omitempty"`
	PhoneNumber string `plist:",omitempty"`
	PIN         string `plist:",omitempty"`
}

// EraseDevice wipes the whole device (the full wipe).
type EraseDevice struct {
	Request
	PIN                    string `plist:",omitempty"`
	PreserveDataPlan       bool   `plist:",omitempty"`
	DisallowProximitySetup bool   `plist:",omitempty"`
}

// ClearPasscode removes the passcode, with the unlock token the device
// gave at TokenUpdate.
type ClearPasscode struct {
	Request
	UnlockToken []byte
}

// InstallProfile installs a (signed) configuration profile.
type InstallProfile struct {
	Request
	Payload []byte
}

// RemoveProfile removes a profile by its PayloadIdentifier.
type RemoveProfile struct {
	Request
	Identifier string
}

func (DeviceInformation) RequestType() string        { return "DeviceInformation" }
func (SecurityInfo) RequestType() string             { return "SecurityInfo" }
func (ProfileList) RequestType() string              { return "ProfileList" }
func (InstalledApplicationList) RequestType() string { return "InstalledApplicationList" }
func (CertificateList) RequestType() string          { return "CertificateList" }
func (DeviceLock) RequestType() string               { return "DeviceLock" }
func (EraseDevice) RequestType() string              { return "EraseDevice" }
func (ClearPasscode) RequestType() string            { return "ClearPasscode" }
func (InstallProfile) RequestType() string           { return "InstallProfile" }
func (RemoveProfile) RequestType() string            { return "RemoveProfile" }

var pinRE = regexp.MustCompile(`^[0-9]{6}$`)

func (c DeviceInformation) validate() error {
	for _, q := range c.Queries {
		if q == "" || len(q) > 100 {
			return mdmd.FieldError("queries", "each query is 1 to 100 characters")
		}
	}
	return nil
}
func (SecurityInfo) validate() error             { return nil }
func (ProfileList) validate() error              { return nil }
func (InstalledApplicationList) validate() error { return nil }
func (CertificateList) validate() error          { return nil }
func (c DeviceLock) validate() error {
	if len(c.Message) > 500 {
		return mdmd.FieldError("message", "at most 500 characters")
	}
	if len(c.PhoneNumber) > 40 {
		return mdmd.FieldError("phone_number", "at most 40 characters")
	}
	if c.PIN != "" && !pinRE.MatchString(c.PIN) {
		return mdmd.FieldError("pin", "must be 6 digits")
	}
	return nil
}
func (c EraseDevice) validate() error {
	if c.PIN != "" && !pinRE.MatchString(c.PIN) {
		return mdmd.FieldError("pin", "must be 6 digits")
	}
	return nil
}
func (c ClearPasscode) validate() error {
	if len(c.UnlockToken) == 0 {
		return mdmd.Errorf(mdmd.EConflict, "the device sent no unlock token, so its passcode cannot be cleared")
	}
	return nil
}
func (c InstallProfile) validate() error {
	if len(c.Payload) == 0 {
		return mdmd.FieldError("payload", "required")
	}
	return nil
}
func (c RemoveProfile) validate() error {
	if strings.TrimSpace(c.Identifier) == "" {
		return mdmd.FieldError("identifier", "required")
	}
	return nil
}

// EncodeApple returns the command plist a device receives:
// {CommandUUID, Command: {RequestType, ...}}.
func EncodeApple(commandUUID string, c AppleCommand) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	t := c.RequestType()
	var body any
	switch v := c.(type) {
	case DeviceInformation:
		if len(v.Queries) == 0 {
			v.Queries = DefaultQueries
		}
		v.Request.RequestType = t
		body = v
	case SecurityInfo:
		v.Request.RequestType = t
		body = v
	case ProfileList:
		v.Request.RequestType = t
		body = v
	case InstalledApplicationList:
		v.Request.RequestType = t
		body = v
	case CertificateList:
		v.Request.RequestType = t
		body = v
	case DeviceLock:
		v.Request.RequestType = t
		body = v
	case EraseDevice:
		v.Request.RequestType = t
		body = v
	case ClearPasscode:
		v.Request.RequestType = t
		body = v
	case InstallProfile:
		v.Request.RequestType = t
		body = v
	case RemoveProfile:
		v.Request.RequestType = t
		body = v
	default:
		return nil, fmt.Errorf("commands: unknown Apple command %T", c)
	}
	return plist.Marshal(struct {
		CommandUUID string
		Command     any
	}{commandUUID, body})
}
