package fakeamapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
)

func (s *Server) device(w http.ResponseWriter, r *http.Request, ent string, rest []string, body []byte) {
	if len(rest) == 0 && r.Method == "GET" {
		s.count("devices.list")
		s.list(w, r, ent)
		return
	}
	if len(rest) == 0 {
		apiError(w, 404, "NOT_FOUND", "no such method")
		return
	}
	id, verb, _ := strings.Cut(rest[0], ":")
	name := ent + "/devices/" + id
	s.mu.Lock()
	d, ok := s.devices[name]
	s.mu.Unlock()
	if !ok {
		apiError(w, 404, "NOT_FOUND", "device not found")
		return
	}
	switch {
	case len(rest) == 3 && rest[1] == "operations" && r.Method == "GET":
		s.count("operations.get")
		s.mu.Lock()
		op, ok := s.operations[name+"/operations/"+rest[2]]
		s.mu.Unlock()
		if !ok {
			apiError(w, 404, "NOT_FOUND", "operation not found")
			return
		}
		writeJSON(w, op)
	case len(rest) == 1 && verb == "issueCommand" && r.Method == "POST":
		s.count("issueCommand")
		var c am.Command
		if err := json.Unmarshal(body, &c); err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", err.Error())
			return
		}
		switch c.Type {
		case "LOCK", "RESET_PASSWORD", "REBOOT", "START_LOST_MODE", "STOP_LOST_MODE", "RELINQUISH_OWNERSHIP", "WIPE", "CLEAR_APP_DATA", "REQUEST_DEVICE_INFO":
		default:
			apiError(w, 400, "INVALID_ARGUMENT", "unknown command type "+c.Type)
			return
		}
		c.CreateTime = now()
		if c.Duration == "" {
			c.Duration = "600s"
		}
		meta, _ := json.Marshal(struct {
			Type string `json:"@type"`
			*am.Command
		}{"type.googleapis.com/google.android.devicemanagement.v1.Command", &c})
		op := &am.Operation{Name: name + "/operations/" + strconv.FormatInt(s.nextID.Add(1), 10), Metadata: meta}
		s.mu.Lock()
		s.operations[op.Name] = op
		auto := s.autoAck
		if auto {
			s.complete(op, d, &c)
		}
		s.mu.Unlock()
		writeJSON(w, op)
		if auto {
			s.publish("COMMAND", op)
		}
	case len(rest) == 1 && verb == "" && r.Method == "GET":
		s.count("devices.get")
		s.mu.Lock()
		writeJSON(w, d)
		s.mu.Unlock()
	case len(rest) == 1 && verb == "" && r.Method == "DELETE":
		s.count("devices.delete")
		q := r.URL.Query()
		if msg := q.Get("wipeReasonMessage"); len(msg) > 200 {
			apiError(w, 400, "INVALID_ARGUMENT", "wipeReasonMessage longer than 200 characters")
			return
		}
		s.mu.Lock()
		s.deleted[name] = DeleteRecord{WipeDataFlags: q["wipeDataFlags"], WipeReasonMessage: q.Get("wipeReasonMessage")}
		d.AppliedState, d.State = "DELETED", "DELETED"
		d.LastStatusReportTime = now()
		snapshot := *d
		delete(s.devices, name)
		s.mu.Unlock()
		writeJSON(w, map[string]any{})
		s.publish("STATUS_REPORT", &snapshot)
	default:
		apiError(w, 404, "NOT_FOUND", "no such method")
	}
}

// complete finishes a command on the device (with s.mu held).
func (s *Server) complete(op *am.Operation, d *am.Device, c *am.Command) {
	op.Done = true
	switch {
	case s.cmdError != "":
		c.ErrorCode = s.cmdError
		op.Error = &am.Status{Code: 9, Message: "the device could not carry out the command"}
	case c.Type == "REBOOT" && d.ManagementMode != "DEVICE_OWNER":
		c.ErrorCode = "MANAGEMENT_MODE"
		op.Error = &am.Status{Code: 9, Message: "REBOOT needs a fully managed device"}
	case c.Type == "RELINQUISH_OWNERSHIP" && !(d.Ownership == "COMPANY_OWNED" && d.ManagementMode == "PROFILE_OWNER"):
		c.ErrorCode = "MANAGEMENT_MODE"
		op.Error = &am.Status{Code: 9, Message: "RELINQUISH_OWNERSHIP needs a company-owned device with a work profile"}
	case c.Type == "RESET_PASSWORD" && len(c.NewPassword) > 0 && len(c.NewPassword) < 4:
		c.ErrorCode = "INVALID_VALUE"
		op.Error = &am.Status{Code: 3, Message: "password too short"}
	}
	meta, _ := json.Marshal(struct {
		Type string `json:"@type"`
		*am.Command
	}{"type.googleapis.com/google.android.devicemanagement.v1.Command", c})
	op.Metadata = meta
}

// CompleteOperations completes every pending operation (devices that come
// online) and publishes COMMAND notifications.
func (s *Server) CompleteOperations() int {
	s.mu.Lock()
	var done []*am.Operation
	for _, op := range s.operations {
		if op.Done {
			continue
		}
		var c am.Command
		json.Unmarshal(op.Metadata, &c)
		dev := s.devices[op.Name[:strings.Index(op.Name, "/operations/")]]
		if dev == nil {
			continue
		}
		s.complete(op, dev, &c)
		done = append(done, op)
	}
	s.mu.Unlock()
	for _, op := range done {
		s.publish("COMMAND", op)
	}
	return len(done)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, n := range s.order {
		if strings.HasPrefix(n, ent+"/") && s.devices[n] != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	size, _ := strconv.Atoi(r.URL.Query().Get("pageSize"))
	if size <= 0 || size > 100 {
		size = 100
	}
	start := 0
	if tok := r.URL.Query().Get("pageToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(names) {
			apiError(w, 400, "INVALID_ARGUMENT", "invalid page token")
			return
		}
		start = n
	}
	end := min(start+size, len(names))
	resp := &am.ListDevicesResponse{}
	for _, n := range names[start:end] {
		resp.Devices = append(resp.Devices, s.devices[n])
	}
	if end < len(names) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	writeJSON(w, resp)
}

// Posture is what a simulated device reports.
type Posture struct {
	AndroidVersion      string
	SecurityPatchLevel  string // YYYY-MM-DD
	APILevel            int64
	DevicePosture       string // SECURE, AT_RISK, POTENTIALLY_COMPROMISED
	PostureRisks        []string
	Encrypted           bool
	DeviceSecure        bool // has a screen lock
	ADBEnabled          bool
	DeveloperSettings   bool
	UnknownSources      bool
	VerifyAppsEnabled   bool
	PolicyCompliant     bool
	NonComplianceFields []string
	Model               string
	Serial              string
	// CompanyOwned makes a work-profile token provision a company-owned
	// device with a work profile (instead of a personal one).
	CompanyOwned bool
}

// HealthyPosture is an up-to-date, locked-down phone.
var HealthyPosture = Posture{AndroidVersion: "15", SecurityPatchLevel: time.Now().AddDate(0, -1, 0).Format("2006-01-02"), APILevel: 35,
	DevicePosture: "SECURE", Encrypted: true, DeviceSecure: true, VerifyAppsEnabled: true, PolicyCompliant: true, Model: "Pixel 9"}

// Enroll enrolls a simulated device with an enrollment token value, as the
// device would by scanning its QR code, and publishes ENROLLMENT and a
// first STATUS_REPORT. It returns the device's resource name.
func (s *Server) Enroll(tokenValue string, p Posture) (string, error) {
	s.mu.Lock()
	t, ok := s.tokens[tokenValue]
	if !ok {
		s.mu.Unlock()
		return "", fmt.Errorf("unknown enrollment token")
	}
	exp, _ := time.Parse(time.RFC3339Nano, t.ExpirationTimestamp)
	if time.Now().After(exp) {
		s.mu.Unlock()
		return "", fmt.Errorf("enrollment token expired")
	}
	if t.OneTimeOnly {
		delete(s.tokens, tokenValue)
	}
	ent := t.Name[:strings.Index(t.Name, "/enrollmentTokens/")]
	id := fmt.Sprintf("3%015x", s.nextID.Add(1))
	name := ent + "/devices/" + id
	mode, own := "DEVICE_OWNER", "COMPANY_OWNED"
	if t.AllowPersonalUsage == "PERSONAL_USAGE_ALLOWED" {
		mode, own = "PROFILE_OWNER", "PERSONALLY_OWNED"
		if p.CompanyOwned {
			own = "COMPANY_OWNED" // a company device set up with a work profile
		}
	}
	policy := t.PolicyName
	if policy == "" {
		policy = ent + "/policies/default"
	}
	var version int64
	if pol := s.policies[policy]; pol != nil {
		version = pol.Version
	}
	d := &am.Device{Name: name, ManagementMode: mode, Ownership: own, State: "ACTIVE", AppliedState: "ACTIVE",
		EnrollmentTime: now(), EnrollmentTokenName: t.Name, EnrollmentTokenData: t.AdditionalData,
		PolicyName: policy, AppliedPolicyName: policy, AppliedPolicyVersion: version}
	applyPosture(d, p)
	s.devices[name] = d
	s.order = append(s.order, name)
	snapshot := *d
	s.mu.Unlock()
	s.publish("ENROLLMENT", &snapshot)
	s.publish("STATUS_REPORT", &snapshot)
	return name, nil
}

func applyPosture(d *am.Device, p Posture) {
	d.ApiLevel = p.APILevel
	d.SoftwareInfo = &am.SoftwareInfo{AndroidVersion: p.AndroidVersion, SecurityPatchLevel: p.SecurityPatchLevel,
		AndroidBuildNumber: "AP4A." + strings.ReplaceAll(p.SecurityPatchLevel, "-", "")}
	enc := "ENCRYPTED"
	if !p.Encrypted {
		enc = "INACTIVE"
	}
	d.DeviceSettings = &am.DeviceSettings{IsEncrypted: p.Encrypted, EncryptionStatus: enc, IsDeviceSecure: p.DeviceSecure,
		AdbEnabled: p.ADBEnabled, DevelopmentSettingsEnabled: p.DeveloperSettings, UnknownSourcesEnabled: p.UnknownSources,
		VerifyAppsEnabled: p.VerifyAppsEnabled}
	sp := &am.SecurityPosture{DevicePosture: p.DevicePosture}
	for _, r := range p.PostureRisks {
		sp.PostureDetails = append(sp.PostureDetails, &am.PostureDetail{SecurityRisk: r})
	}
	d.SecurityPosture = sp
	d.PolicyCompliant = p.PolicyCompliant
	d.NonComplianceDetails = nil
	for _, f := range p.NonComplianceFields {
		d.NonComplianceDetails = append(d.NonComplianceDetails, &am.NonComplianceDetail{SettingName: f, NonComplianceReason: "USER_ACTION"})
	}
	serial := p.Serial
	if serial == "" {
		serial = "R5C" + strings.ToUpper(d.Name[len(d.Name)-8:])
	}
	d.HardwareInfo = &am.HardwareInfo{Model: p.Model, Brand: "Google", Manufacturer: "Google", SerialNumber: serial,
		EnterpriseSpecificId: "ESID" + strings.ToUpper(d.Name[len(d.Name)-8:])}
	d.LastStatusReportTime = now()
}

// Report changes a device's posture and publishes a STATUS_REPORT.
func (s *Server) Report(name string, p Posture) error {
	s.mu.Lock()
	d, ok := s.devices[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("no device %s", name)
	}
	applyPosture(d, p)
	if pol := s.policies[d.PolicyName]; pol != nil {
		d.AppliedPolicyVersion = pol.Version // the device applied the latest policy
	}
	snapshot := *d
	s.mu.Unlock()
	s.publish("STATUS_REPORT", &snapshot)
	return nil
}

// Device returns a copy of a device's resource.
func (s *Server) Device(name string) (*am.Device, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[name]
	if !ok {
		return nil, false
	}
	c := *d
	return &c, true
}

// Policy returns a stored policy.
func (s *Server) Policy(name string) (*am.Policy, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[name]
	return p, ok
}

// Operations returns every operation issued so far.
func (s *Server) Operations() []*am.Operation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*am.Operation
	for _, op := range s.operations {
		c := *op
		out = append(out, &c)
	}
	return out
}

// publish queues a Pub/Sub push message with the resource as data.
func (s *Server) publish(notificationType string, resource any) {
	s.mu.Lock()
	silent := s.silent[notificationType]
	s.mu.Unlock()
	if silent {
		return
	}
	data, _ := json.Marshal(resource)
	s.pushMu.Lock()
	s.published++
	id := strconv.FormatInt(1000000+s.published, 10)
	s.pushMu.Unlock()
	s.pushes <- pushMsg{notificationType: notificationType, data: data, id: id, publishTime: time.Now().UTC()}
}

// PushEnvelope builds a Pub/Sub push request body.
func PushEnvelope(notificationType string, data []byte, messageID string, publishTime time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"message": map[string]any{
			"attributes":  map[string]string{"notificationType": notificationType},
			"data":        base64.StdEncoding.EncodeToString(data),
			"messageId":   messageID,
			"message_id":  messageID,
			"publishTime": publishTime.Format(time.RFC3339Nano),
		},
		"subscription": "projects/mdmd-test/subscriptions/mdmd-push",
	})
	return b
}

// deliver pushes messages to mdmd, redelivering with backoff until it
// answers 2xx, as Pub/Sub does.
func (s *Server) deliver() {
	defer s.wg.Done()
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-s.stop:
			return
		case m := <-s.pushes:
			s.mu.Lock()
			u := s.pushURL
			s.mu.Unlock()
			if u == "" {
				time.Sleep(20 * time.Millisecond)
				s.pushes <- m
				continue
			}
			resp, err := client.Post(u, "application/json", bytes.NewReader(PushEnvelope(m.notificationType, m.data, m.id, m.publishTime)))
			ok := err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300
			if resp != nil {
				resp.Body.Close()
			}
			if ok {
				s.Delivered.Add(1)
				continue
			}
			s.Rejected.Add(1)
			m.attempts++
			if m.attempts > 50 {
				continue // dead-lettered
			}
			go func(m pushMsg) {
				select {
				case <-s.stop:
				case <-time.After(time.Duration(min(m.attempts, 10)) * 20 * time.Millisecond):
					s.pushes <- m
				}
			}(m)
		}
	}
}

// Pending reports how many push messages wait for delivery.
func (s *Server) Pending() int { return len(s.pushes) }
