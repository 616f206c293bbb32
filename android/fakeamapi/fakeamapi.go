// Package fakeamapi is an in-tree Android Management API for tests, the
// demo and benchmarks. It speaks AMAPI's real JSON (it encodes with the
// official Go client's own types, so int64 fields travel as strings and
// false booleans are omitted), holds simulated devices whose posture can
// be scripted, enrolls a device from an enrollment token, delivers Pub/Sub
// push messages to mdmd's endpoint (redelivering until acknowledged), and
// can inject latency, 429 and 5xx.
package fakeamapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
)

// Server is a fake AMAPI.
type Server struct {
	srv *httptest.Server

	mu          sync.Mutex
	signups     map[string]string // signup URL name -> enterprise token (once completed)
	enterprises map[string]*am.Enterprise
	tokens      map[string]*am.EnrollmentToken // by value
	policies    map[string]*am.Policy
	devices     map[string]*am.Device
	operations  map[string]*am.Operation
	order       []string // device names in creation order
	failures    []int
	latency     time.Duration
	calls       map[string]int
	callTimes   []time.Time
	pushURL     string
	nextID      atomic.Int64
	deleted     map[string]DeleteRecord
	autoAck     bool // commands complete as soon as they are issued
	silent      map[string]bool
	cmdError    string // errorCode the next commands complete with

	pushMu    sync.Mutex
	published int64
	pushes    chan pushMsg
	stop      chan struct{}
	wg        sync.WaitGroup
	// Delivered counts push messages mdmd acknowledged; Rejected those it
	// refused (and that are redelivered).
	Delivered, Rejected atomic.Int64
}

// DeleteRecord is how a device was deleted (wiped).
type DeleteRecord struct {
	WipeDataFlags     []string
	WipeReasonMessage string
}

type pushMsg struct {
	notificationType string
	data             []byte
	id               string
	publishTime      time.Time
	attempts         int
}

// Start runs a fake AMAPI on 127.0.0.1.
func Start() *Server {
	s := &Server{signups: map[string]string{}, enterprises: map[string]*am.Enterprise{}, tokens: map[string]*am.EnrollmentToken{},
		policies: map[string]*am.Policy{}, devices: map[string]*am.Device{}, operations: map[string]*am.Operation{},
		calls: map[string]int{}, deleted: map[string]DeleteRecord{}, autoAck: true, silent: map[string]bool{},
		pushes: make(chan pushMsg, 100000), stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	for i := 0; i < 4; i++ {
		s.wg.Add(1)
		go s.deliver()
	}
	return s
}

// URL is the endpoint to give the Go client (option.WithEndpoint).
func (s *Server) URL() string { return s.srv.URL + "/" }

// Close stops the server and its push delivery.
func (s *Server) Close() {
	close(s.stop)
	s.wg.Wait()
	s.srv.Close()
}

// SetPushEndpoint sets where Pub/Sub push messages go (mdmd's endpoint
// with its secret token).
func (s *Server) SetPushEndpoint(u string) { s.mu.Lock(); s.pushURL = u; s.mu.Unlock() }

// FailNext makes the next API calls answer these statuses (429, 503…).
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	s.failures = append(s.failures, statuses...)
	s.mu.Unlock()
}

// SetLatency delays every API answer.
func (s *Server) SetLatency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// SetAutoComplete decides whether issued commands complete at once (the
// device is online) or stay pending until CompleteOperations.
func (s *Server) SetAutoComplete(on bool) { s.mu.Lock(); s.autoAck = on; s.mu.Unlock() }

// Silence stops notifications of a type from being published (lost
// notifications, for reconciliation tests); Silence(t, false) resumes.
func (s *Server) Silence(notificationType string, on bool) {
	s.mu.Lock()
	s.silent[notificationType] = on
	s.mu.Unlock()
}

// FailCommands makes issued commands complete with an AMAPI errorCode
// (API_LEVEL, MANAGEMENT_MODE, INVALID_VALUE, UNSUPPORTED, UNKNOWN); ""
// stops it.
func (s *Server) FailCommands(errorCode string) { s.mu.Lock(); s.cmdError = errorCode; s.mu.Unlock() }

// Calls returns how many times each method was called ("issueCommand",
// "devices.delete", …).
func (s *Server) Calls(method string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[method] }

// CallTimes returns when every API call arrived.
func (s *Server) CallTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.callTimes...)
}

// Deleted returns how a device was deleted, if it was.
func (s *Server) Deleted(name string) (DeleteRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.deleted[name]
	return r, ok
}

// CompleteSignup stands in for the admin finishing Google's sign-up page:
// it returns the enterprise token the callback would carry.
func (s *Server) CompleteSignup(signupURLName string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.signups[signupURLName]; !ok {
		return "", fmt.Errorf("unknown signup URL %s", signupURLName)
	}
	tok := "EAH" + randHex(12)
	s.signups[signupURLName] = tok
	return tok, nil
}

// CreateEnterprise adds an enterprise directly (to bind an existing one).
func (s *Server) CreateEnterprise(displayName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := "enterprises/LC0" + strings.ToUpper(randHex(4))
	s.enterprises[name] = &am.Enterprise{Name: name, EnterpriseDisplayName: displayName}
	return name
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// apiError writes AMAPI's error JSON.
func apiError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(v)
}

var statusNames = map[int]string{400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
	500: "INTERNAL", 503: "UNAVAILABLE"}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.callTimes = append(s.callTimes, time.Now())
	latency := s.latency
	var fail int
	if len(s.failures) > 0 {
		fail, s.failures = s.failures[0], s.failures[1:]
	}
	s.mu.Unlock()
	if latency > 0 {
		time.Sleep(latency)
	}
	if fail != 0 {
		apiError(w, fail, statusNames[fail], "injected failure")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	q := r.URL.Query()
	parts := strings.Split(path, "/")
	switch {
	case r.Method == "POST" && path == "signupUrls":
		s.count("signupUrls.create")
		if q.Get("projectId") == "" {
			apiError(w, 400, "INVALID_ARGUMENT", "projectId is required")
			return
		}
		name := "signupUrls/C" + randHex(8)
		s.mu.Lock()
		s.signups[name] = ""
		s.mu.Unlock()
		writeJSON(w, &am.SignupUrl{Name: name, Url: "https://enterprise.google.com/signup/android/email?callbackUrl=" + q.Get("callbackUrl")})
	case r.Method == "POST" && path == "enterprises":
		s.count("enterprises.create")
		s.mu.Lock()
		tok, ok := s.signups[q.Get("signupUrlName")]
		s.mu.Unlock()
		if !ok || tok == "" || tok != q.Get("enterpriseToken") {
			apiError(w, 400, "INVALID_ARGUMENT", "invalid signupUrlName or enterpriseToken")
			return
		}
		var e am.Enterprise
		if err := json.Unmarshal(body, &e); err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", err.Error())
			return
		}
		e.Name = "enterprises/LC0" + strings.ToUpper(randHex(4))
		s.mu.Lock()
		s.enterprises[e.Name] = &e
		delete(s.signups, q.Get("signupUrlName"))
		s.mu.Unlock()
		writeJSON(w, &e)
	case len(parts) == 2 && parts[0] == "enterprises":
		s.enterprise(w, r, "enterprises/"+parts[1], body)
	case len(parts) >= 3 && parts[0] == "enterprises":
		ent := "enterprises/" + parts[1]
		s.mu.Lock()
		_, ok := s.enterprises[ent]
		s.mu.Unlock()
		if !ok {
			apiError(w, 404, "NOT_FOUND", "enterprise not found")
			return
		}
		switch parts[2] {
		case "enrollmentTokens":
			s.enrollmentTokens(w, r, ent, parts[3:], body)
		case "policies":
			s.policy(w, r, ent, parts[3:], body)
		case "devices":
			s.device(w, r, ent, parts[3:], body)
		default:
			apiError(w, 404, "NOT_FOUND", "no such collection")
		}
	default:
		apiError(w, 404, "NOT_FOUND", "no such method "+r.Method+" "+path)
	}
}

func (s *Server) count(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *Server) enterprise(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.enterprises[name]
	if !ok {
		apiError(w, 404, "NOT_FOUND", "enterprise not found")
		return
	}
	switch r.Method {
	case "GET":
		s.calls["enterprises.get"]++
		writeJSON(w, e)
	case "PATCH":
		s.calls["enterprises.patch"]++
		var patch am.Enterprise
		if err := json.Unmarshal(body, &patch); err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", err.Error())
			return
		}
		for _, f := range strings.Split(r.URL.Query().Get("updateMask"), ",") {
			switch f {
			case "pubsubTopic":
				e.PubsubTopic = patch.PubsubTopic
			case "enabledNotificationTypes":
				e.EnabledNotificationTypes = patch.EnabledNotificationTypes
			case "enterpriseDisplayName":
				e.EnterpriseDisplayName = patch.EnterpriseDisplayName
			}
		}
		writeJSON(w, e)
	default:
		apiError(w, 405, "INVALID_ARGUMENT", "method not allowed")
	}
}

func (s *Server) enrollmentTokens(w http.ResponseWriter, r *http.Request, ent string, rest []string, body []byte) {
	switch {
	case r.Method == "POST" && len(rest) == 0:
		s.count("enrollmentTokens.create")
		var t am.EnrollmentToken
		if err := json.Unmarshal(body, &t); err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", err.Error())
			return
		}
		if len(t.AdditionalData) > 1024 {
			apiError(w, 400, "INVALID_ARGUMENT", "additionalData longer than 1024 characters")
			return
		}
		switch t.AllowPersonalUsage {
		case "", "PERSONAL_USAGE_ALLOWED", "PERSONAL_USAGE_DISALLOWED", "PERSONAL_USAGE_DISALLOWED_USERLESS":
		default:
			apiError(w, 400, "INVALID_ARGUMENT", "invalid allowPersonalUsage")
			return
		}
		d := time.Hour
		if t.Duration != "" {
			secs, err := strconv.ParseFloat(strings.TrimSuffix(t.Duration, "s"), 64)
			if err != nil || secs < 60 {
				apiError(w, 400, "INVALID_ARGUMENT", "invalid duration")
				return
			}
			d = time.Duration(secs * float64(time.Second))
		}
		t.Name = ent + "/enrollmentTokens/" + randHex(8)
		t.Value = strings.ToUpper(randHex(10))
		t.ExpirationTimestamp = time.Now().Add(d).UTC().Format(time.RFC3339Nano)
		qr, _ := json.Marshal(map[string]any{
			"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME":            "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
			"android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM":        "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
			"android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": "https://play.google.com/managed/downloadManagingApp?identifier=setup",
			"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE":                    map[string]string{"com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN": t.Value},
		})
		t.QrCode = string(qr)
		s.mu.Lock()
		s.tokens[t.Value] = &t
		s.mu.Unlock()
		writeJSON(w, &t)
	case r.Method == "DELETE" && len(rest) == 1:
		s.count("enrollmentTokens.delete")
		name := ent + "/enrollmentTokens/" + rest[0]
		s.mu.Lock()
		for v, t := range s.tokens {
			if t.Name == name {
				delete(s.tokens, v)
			}
		}
		s.mu.Unlock()
		writeJSON(w, map[string]any{})
	default:
		apiError(w, 404, "NOT_FOUND", "no such method")
	}
}

func (s *Server) policy(w http.ResponseWriter, r *http.Request, ent string, rest []string, body []byte) {
	if len(rest) != 1 {
		apiError(w, 404, "NOT_FOUND", "no such method")
		return
	}
	name := ent + "/policies/" + rest[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case "PATCH":
		s.calls["policies.patch"]++
		var p am.Policy
		if err := json.Unmarshal(body, &p); err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", err.Error())
			return
		}
		old := s.policies[name]
		p.Name, p.Version = name, 1
		if old != nil {
			p.Version = old.Version + 1
		}
		s.policies[name] = &p
		writeJSON(w, &p)
	case "GET":
		s.calls["policies.get"]++
		p, ok := s.policies[name]
		if !ok {
			apiError(w, 404, "NOT_FOUND", "policy not found")
			return
		}
		writeJSON(w, p)
	default:
		apiError(w, 405, "INVALID_ARGUMENT", "method not allowed")
	}
}
