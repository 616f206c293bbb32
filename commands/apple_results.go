package commands

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
)

// AppleReport is what a device sends to the command endpoint: its status,
// the command it answers and, for Acknowledged, the command's result.
type AppleReport struct {
	UDID         string
	EnrollmentID string
	UserID       string
	Status       string
	CommandUUID  string
	ErrorChain   []AppleError

	QueryResponses           *DeviceInfoResponse
	SecurityInfo             *SecurityInfoResponse
	ProfileList              []AppleProfile
	InstalledApplicationList []AppleApp
	CertificateList          []AppleCert
}

// AppleError is one entry of an ErrorChain.
type AppleError struct {
	ErrorCode            int
	ErrorDomain          string
	LocalizedDescription string
	USEnglishDescription string
}

// DeviceInfoResponse holds the DeviceInformation answers mdmd uses.
type DeviceInfoResponse struct {
	UDID                    string
	DeviceName              string
	OSVersion               string
	BuildVersion            string
	ModelName               string
	Model                   string
	ProductName             string
	SerialNumber            string
	DeviceCapacity          float64
	AvailableDeviceCapacity float64
	IsSupervised            *bool
	IsActivationLockEnabled *bool
}

// SecurityInfoResponse holds the SecurityInfo answers mdmd uses.
type SecurityInfoResponse struct {
	HardwareEncryptionCaps        int
	PasscodePresent               *bool
	PasscodeCompliant             *bool
	PasscodeCompliantWithProfiles *bool
}

// AppleProfile is one installed profile of a ProfileList answer.
type AppleProfile struct {
	PayloadIdentifier  string
	PayloadDisplayName string
	PayloadUUID        string
	IsManaged          bool
}

// AppleApp is one app of an InstalledApplicationList answer.
type AppleApp struct {
	Identifier   string
	Name         string
	ShortVersion string
	Version      string
}

// AppleCert is one certificate of a CertificateList answer.
type AppleCert struct {
	CommonName string
	IsIdentity bool
}

// Apple command statuses a device may report.
var appleStatuses = map[string]mdmd.CommandStatus{
	"Idle":               "",
	"Acknowledged":       mdmd.CommandAcknowledged,
	"Error":              mdmd.CommandError,
	"CommandFormatError": mdmd.CommandFormatError,
	"NotNow":             mdmd.CommandNotNow,
}

// ParseAppleReport decodes a command-endpoint body. A malformed plist, an
// unknown status or a missing CommandUUID is EInvalid. A result that does
// not decode into the typed fields is returned with resultErr set: the
// report is still usable (its status and raw body are kept), so one odd
// answer never blocks the device's queue.
func ParseAppleReport(body []byte) (r *AppleReport, status mdmd.CommandStatus, resultErr error, err error) {
	var head struct {
		UDID, EnrollmentID, UserID, Status, CommandUUID string
		ErrorChain                                      []AppleError
	}
	if err := plist.Unmarshal(body, &head); err != nil {
		return nil, "", nil, mdmd.Errorf(mdmd.EInvalid, "malformed plist: %v", err)
	}
	st, ok := appleStatuses[head.Status]
	if !ok {
		return nil, "", nil, mdmd.FieldError("Status", "unknown command status %q", head.Status)
	}
	if head.Status != "Idle" && head.CommandUUID == "" {
		return nil, "", nil, mdmd.FieldError("CommandUUID", "required with status %s", head.Status)
	}
	r = &AppleReport{UDID: head.UDID, EnrollmentID: head.EnrollmentID, UserID: head.UserID, Status: head.Status,
		CommandUUID: head.CommandUUID, ErrorChain: head.ErrorChain}
	if head.Status == "Acknowledged" {
		var full AppleReport
		if e := plist.Unmarshal(body, &full); e != nil {
			resultErr = fmt.Errorf("result does not decode: %v", e)
		} else {
			r.QueryResponses, r.SecurityInfo = full.QueryResponses, full.SecurityInfo
			r.ProfileList, r.InstalledApplicationList, r.CertificateList = full.ProfileList, full.InstalledApplicationList, full.CertificateList
		}
	}
	return r, st, resultErr, nil
}

// ErrorText renders an ErrorChain for the command's error field.
func (r *AppleReport) ErrorText() string {
	var parts []string
	for _, e := range r.ErrorChain {
		desc := e.USEnglishDescription
		if desc == "" {
			desc = e.LocalizedDescription
		}
		parts = append(parts, fmt.Sprintf("%s %d: %s", e.ErrorDomain, e.ErrorCode, desc))
	}
	if len(parts) == 0 && r.Status != "Acknowledged" && r.Status != "NotNow" {
		return r.Status
	}
	return strings.Join(parts, "; ")
}

// Posture derives the posture a result reports, or nil if it reports none.
func (r *AppleReport) Posture(deviceID string, at time.Time) *mdmd.Posture {
	p := &mdmd.Posture{DeviceID: deviceID, ObservedAt: at}
	details := map[string]any{}
	found := false
	if q := r.QueryResponses; q != nil {
		found = true
		p.OSVersion, p.BuildVersion = q.OSVersion, q.BuildVersion
		p.Supervised, p.ActivationLock = q.IsSupervised, q.IsActivationLockEnabled
		for k, v := range map[string]any{"model": q.Model, "model_name": q.ModelName, "product_name": q.ProductName,
			"device_capacity_gb": q.DeviceCapacity, "available_capacity_gb": q.AvailableDeviceCapacity} {
			if v != "" && v != 0.0 {
				details[k] = v
			}
		}
	}
	if s := r.SecurityInfo; s != nil {
		found = true
		p.PasscodePresent = s.PasscodePresent
		if s.PasscodeCompliant != nil || s.PasscodeCompliantWithProfiles != nil {
			ok := (s.PasscodeCompliant == nil || *s.PasscodeCompliant) &&
				(s.PasscodeCompliantWithProfiles == nil || *s.PasscodeCompliantWithProfiles)
			p.PasscodeCompliant = &ok
		}
		// Bit 1 is block-level and bit 2 file-level (Data Protection)
		// encryption; a device is encrypted when it has both.
		enc := s.HardwareEncryptionCaps&3 == 3
		p.Encrypted = &enc
		details["hardware_encryption_caps"] = s.HardwareEncryptionCaps
	}
	if !found {
		return nil
	}
	if len(details) > 0 {
		p.Details, _ = json.Marshal(details)
	}
	return p
}
