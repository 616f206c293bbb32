package android

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

var policyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// pushRequest is a Pub/Sub push delivery.
type pushRequest struct {
	Message struct {
		Attributes  map[string]string `json:"attributes"`
		Data        string            `json:"data"`
		MessageID   string            `json:"messageId"`
		MessageID2  string            `json:"message_id"`
		PublishTime string            `json:"publishTime"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// maxPush bounds a push body (a Device resource with app reports is a few
// hundred KB at most).
const maxPush = 1 << 20

// ServePubSub is the Pub/Sub push endpoint, POST /android/pubsub/{secret}.
// It answers 2xx only once the notification is durably applied, so
// Pub/Sub redelivers anything that failed; a redelivered or older message
// changes nothing.
func (s *Service) ServePubSub(w http.ResponseWriter, r *http.Request) {
	err := s.pubsub(w, r)
	if err == nil {
		return
	}
	code := mdmd.ErrorCode(err)
	if code == mdmd.EForbidden || code == mdmd.EInvalid || code == mdmd.ENotFound {
		s.log.Warn("Pub/Sub message refused", "err", err, "request_id", web.RequestID(r.Context()))
	}
	web.WriteError(w, r, s.log, err)
}

func (s *Service) pubsub(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return mdmd.Errorf(mdmd.EMethod, "use POST")
	}
	if !s.checkPushSecret(r.Context(), chi.URLParam(r, "secret")) {
		return mdmd.Errorf(mdmd.EForbidden, "wrong or missing push token")
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxPush+1))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return mdmd.Errorf(mdmd.ETooLarge, "body exceeds %d bytes", tooBig.Limit)
		}
		return mdmd.Errorf(mdmd.EInvalid, "reading body: %v", err)
	}
	if len(raw) > maxPush {
		return mdmd.Errorf(mdmd.ETooLarge, "body exceeds %d bytes", maxPush)
	}
	var req pushRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return mdmd.Errorf(mdmd.EInvalid, "malformed push JSON: %v", err)
	}
	msgID := req.Message.MessageID
	if msgID == "" {
		msgID = req.Message.MessageID2
	}
	if msgID == "" || len(msgID) > 200 {
		return mdmd.FieldError("messageId", "required")
	}
	publish, err := time.Parse(time.RFC3339Nano, req.Message.PublishTime)
	if err != nil {
		return mdmd.FieldError("publishTime", "must be an RFC 3339 time")
	}
	data, err := base64.StdEncoding.DecodeString(req.Message.Data)
	if err != nil {
		return mdmd.FieldError("data", "not base64")
	}
	typ := req.Message.Attributes["notificationType"]
	switch typ {
	case "test":
		w.WriteHeader(http.StatusNoContent)
		return nil
	case "ENROLLMENT", "STATUS_REPORT":
		var d am.Device
		if err := json.Unmarshal(data, &d); err != nil {
			return mdmd.FieldError("data", "not a Device: %v", err)
		}
		u, err := Translate(&d, typ == "ENROLLMENT")
		if err != nil {
			return err
		}
		if ent := s.boundEnterprise(r.Context()); !strings.HasPrefix(d.Name, ent+"/devices/") {
			// Not this enterprise's device (a shared topic, or an
			// enterprise bound before): acknowledged, never applied.
			s.log.Warn("Pub/Sub message for another enterprise ignored", "device", d.Name)
			web.WriteJSON(w, http.StatusOK, map[string]string{"result": "ignored"})
			return nil
		}
		u.MessageID, u.PublishTime = msgID, publish
		result, deviceID, err := s.st.ApplyAndroidUpdate(r.Context(), *u)
		if err != nil {
			return err
		}
		if result == mdmd.UpdateApplied && typ == "ENROLLMENT" {
			s.audit(r, deviceID, d.Name, "device.enrolled")
		}
		if result == mdmd.UpdateApplied && u.State.AppliedState == "DELETED" {
			s.audit(r, deviceID, d.Name, "device.deleted")
		}
		web.WriteJSON(w, http.StatusOK, map[string]string{"result": result})
		return nil
	case "COMMAND":
		var op am.Operation
		if err := json.Unmarshal(data, &op); err != nil || op.Name == "" {
			return mdmd.FieldError("data", "not an Operation")
		}
		if s.cmds == nil {
			return mdmd.Errorf(mdmd.EUnavailable, "commands are not set up")
		}
		if ent := s.boundEnterprise(r.Context()); !strings.HasPrefix(op.Name, ent+"/devices/") {
			s.log.Warn("Pub/Sub message for another enterprise ignored", "operation", op.Name)
			web.WriteJSON(w, http.StatusOK, map[string]string{"result": "ignored"})
			return nil
		}
		err := s.cmds.ApplyOperation(r.Context(), &op)
		if mdmd.IsCode(err, mdmd.ENotFound) {
			// An operation mdmd did not issue (or a pruned command):
			// acknowledged, so Pub/Sub does not redeliver it for days.
			s.log.Info("COMMAND notification for no known command ignored", "operation", op.Name)
			web.WriteJSON(w, http.StatusOK, map[string]string{"result": "ignored"})
			return nil
		}
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string]string{"result": mdmd.UpdateApplied})
		return nil
	case "":
		return mdmd.FieldError("notificationType", "attribute required")
	}
	return mdmd.FieldError("notificationType", "unknown notification type %q", typ)
}

func (s *Service) audit(r *http.Request, deviceID, name, action string) {
	if err := s.st.AppendAudit(r.Context(), &mdmd.AuditEvent{ActorType: mdmd.ActorDevice, Actor: name, Action: action,
		TargetType: "device", TargetID: deviceID, Outcome: mdmd.OutcomeSuccess, RequestID: web.RequestID(r.Context())}); err != nil {
		s.log.Error("audit append failed", "err", err)
	}
}

// Translate turns an AMAPI Device into mdmd's update and posture.
func Translate(d *am.Device, enrollment bool) (*mdmd.AndroidUpdate, error) {
	if !strings.HasPrefix(d.Name, "enterprises/") || !strings.Contains(d.Name, "/devices/") {
		return nil, mdmd.FieldError("name", "not a device name: %q", d.Name)
	}
	u := &mdmd.AndroidUpdate{Enrollment: enrollment, State: mdmd.AndroidDevice{
		AMAPIName: d.Name, ManagementMode: d.ManagementMode, AMAPIOwnership: d.Ownership, AppliedState: d.AppliedState,
		PolicyName: d.AppliedPolicyName, AppliedPolicyVersion: d.AppliedPolicyVersion, PolicyCompliant: d.PolicyCompliant,
	}}
	if u.State.PolicyName == "" {
		u.State.PolicyName = d.PolicyName
	}
	if d.EnrollmentTokenData != "" {
		var td tokenData
		if json.Unmarshal([]byte(d.EnrollmentTokenData), &td) == nil {
			u.State.TokenID = td.TokenID
		}
	}
	if len(d.NonComplianceDetails) > 0 {
		nc, _ := json.Marshal(d.NonComplianceDetails)
		u.State.NonCompliance = nc
	}
	if t, err := time.Parse(time.RFC3339Nano, d.LastStatusReportTime); err == nil {
		u.State.LastStatusReport = &t
	}
	if d.HardwareInfo != nil {
		u.Model, u.SerialNumber = d.HardwareInfo.Model, d.HardwareInfo.SerialNumber
	}
	p := &mdmd.Posture{}
	details := map[string]any{"management_mode": d.ManagementMode, "amapi_ownership": d.Ownership, "applied_state": d.AppliedState,
		"policy_compliant": d.PolicyCompliant}
	if si := d.SoftwareInfo; si != nil {
		u.OSVersion = si.AndroidVersion
		p.OSVersion, p.SecurityPatch, p.BuildVersion = si.AndroidVersion, si.SecurityPatchLevel, si.AndroidBuildNumber
	}
	if d.ApiLevel > 0 {
		details["api_level"] = d.ApiLevel
	}
	if ds := d.DeviceSettings; ds != nil {
		enc := ds.IsEncrypted || ds.EncryptionStatus == "ACTIVE" || ds.EncryptionStatus == "ACTIVE_PER_USER" || ds.EncryptionStatus == "ENCRYPTED"
		secure := ds.IsDeviceSecure
		p.Encrypted, p.PasscodePresent = &enc, &secure
		details["encryption_status"] = ds.EncryptionStatus
		details["adb_enabled"] = ds.AdbEnabled
		details["development_settings_enabled"] = ds.DevelopmentSettingsEnabled
		details["unknown_sources_enabled"] = ds.UnknownSourcesEnabled
		details["verify_apps_enabled"] = ds.VerifyAppsEnabled
	}
	// A device passes its passcode rules unless AMAPI reports a password
	// policy it does not meet.
	pwOK := true
	for _, nc := range d.NonComplianceDetails {
		if strings.HasPrefix(nc.SettingName, "passwordPolicies") || strings.HasPrefix(nc.SettingName, "passwordRequirements") {
			pwOK = false
		}
	}
	if d.DeviceSettings != nil {
		ok := pwOK && d.DeviceSettings.IsDeviceSecure
		p.PasscodeCompliant = &ok
	}
	if sp := d.SecurityPosture; sp != nil && sp.DevicePosture != "" {
		compromised := sp.DevicePosture != "SECURE"
		p.Compromised = &compromised
		details["device_posture"] = sp.DevicePosture
		var risks []string
		for _, pd := range sp.PostureDetails {
			risks = append(risks, pd.SecurityRisk)
		}
		details["posture_risks"] = risks
	}
	if d.LastStatusReportTime != "" {
		details["last_status_report_time"] = d.LastStatusReportTime
	}
	p.Details, _ = json.Marshal(details)
	if t := u.State.LastStatusReport; t != nil {
		p.ObservedAt = *t
	}
	u.Posture = p
	return u, nil
}
