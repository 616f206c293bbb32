// Package mdm serves Apple's MDM protocol to devices: the check-in
// endpoint (Authenticate, TokenUpdate, CheckOut, bootstrap tokens) and the
// command endpoint that hands out queued commands and takes their results.
// Every request is authenticated by the device's identity certificate:
// the Mdm-Signature header, or TLS client authentication (directly or
// from a trusted proxy, RFC 9440).
package mdm

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/web"
)

// Store is what the MDM endpoints need from storage.
type Store interface {
	BindAppleEnrollment(ctx context.Context, a mdmd.AppleAuthenticate) (*mdmd.Device, error)
	ResolveAppleIdentity(ctx context.Context, fingerprint string) (*mdmd.AppleEnrollment, error)
	GetAppleEnrollment(ctx context.Context, deviceID string) (*mdmd.AppleEnrollment, error)
	UpdateAppleToken(ctx context.Context, deviceID string, u mdmd.AppleTokenUpdate) error
	EndAppleEnrollment(ctx context.Context, deviceID string, state mdmd.EnrollmentState) error
	SetAppleBootstrapToken(ctx context.Context, deviceID string, sealed []byte) error
	NextCommand(ctx context.Context, deviceID string, skip []string) (*mdmd.Command, error)
	NextCommandAfterNotNow(ctx context.Context, deviceID string) (*mdmd.Command, error)
	RecordCommandResult(ctx context.Context, deviceID, commandID string, r mdmd.CommandResult) (*mdmd.Command, error)
	UpsertPosture(ctx context.Context, p *mdmd.Posture) error
	UpdateDevice(ctx context.Context, id string, u mdmd.DeviceUpdate) (*mdmd.Device, error)
	MarkDevicesSeen(ctx context.Context, ids []string, at time.Time) (int64, error)
	AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
}

// Observer hears about device lifecycle events (profile management
// reconciles on them).
type Observer interface {
	// Enrolled is called when a device completes enrollment.
	Enrolled(ctx context.Context, deviceID string)
	// CommandFinished is called when a command gets a final status.
	CommandFinished(ctx context.Context, deviceID string, cmd *mdmd.Command)
}

// Options configure the service.
type Options struct {
	Observer Observer
	// TrustedProxies may assert a TLS client certificate (RFC 9440
	// Client-Cert header) and that the client used HTTPS
	// (X-Forwarded-Proto).
	TrustedProxies []*net.IPNet
	Logger         *slog.Logger
	// SeenFlush is how often last-seen times are written in one batch.
	SeenFlush time.Duration
}

// Service serves the MDM endpoints.
type Service struct {
	st    Store
	roots *x509.CertPool
	box   *secret.Box
	opt   Options
	log   *slog.Logger
	now   func() time.Time

	seenMu sync.Mutex
	seen   map[string]struct{}
}

// New returns the service; ca is the CA that issues device identities.
func New(st Store, ca *x509.Certificate, box *secret.Box, opt Options) *Service {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.SeenFlush <= 0 {
		opt.SeenFlush = time.Second
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &Service{st: st, roots: roots, box: box, opt: opt, log: opt.Logger, now: time.Now, seen: map[string]struct{}{}}
}

// Run writes last-seen times in batches until ctx ends, then once more.
// Last-seen is informational; a crash loses at most one interval of it.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.opt.SeenFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushSeen(context.WithoutCancel(ctx))
			return
		case <-t.C:
			s.flushSeen(ctx)
		}
	}
}

func (s *Service) markSeen(deviceID string) {
	s.seenMu.Lock()
	s.seen[deviceID] = struct{}{}
	s.seenMu.Unlock()
}

func (s *Service) flushSeen(ctx context.Context) {
	s.seenMu.Lock()
	ids := make([]string, 0, len(s.seen))
	for id := range s.seen {
		ids = append(ids, id)
	}
	s.seen = map[string]struct{}{}
	s.seenMu.Unlock()
	now := s.now()
	for lo := 0; lo < len(ids); lo += 500 {
		if _, err := s.st.MarkDevicesSeen(ctx, ids[lo:min(lo+500, len(ids))], now); err != nil {
			s.log.Warn("recording last-seen failed", "err", err, "devices", len(ids))
		}
	}
}

func deviceErr(format string, args ...any) error {
	return mdmd.Errorf(mdmd.EDeviceAuth, format, args...)
}

// readRequest checks the transport and content type, reads the body and
// authenticates the device's certificate.
func (s *Service) readRequest(r *http.Request, contentType string) ([]byte, *x509.Certificate, error) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return nil, nil, mdmd.Errorf(mdmd.EMethod, "use PUT")
	}
	if !s.secureTransport(r) {
		return nil, nil, deviceErr("HTTPS is required; plain HTTP is accepted only on loopback")
	}
	if contentType != "" {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != contentType {
			return nil, nil, mdmd.Errorf(mdmd.EUnsupported, "Content-Type must be %s", contentType)
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, nil, mdmd.Errorf(mdmd.ETooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return nil, nil, mdmd.Errorf(mdmd.EInvalid, "reading body: %v", err)
	}
	if len(body) == 0 {
		return nil, nil, mdmd.Errorf(mdmd.EInvalid, "empty body")
	}
	cert, err := s.identify(r, body)
	if err != nil {
		return nil, nil, err
	}
	return body, cert, nil
}

func (s *Service) trustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	for _, n := range s.opt.TrustedProxies {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Service) secureTransport(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if s.trustedProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// identify returns the device's verified identity certificate.
func (s *Service) identify(r *http.Request, body []byte) (*x509.Certificate, error) {
	now := s.now()
	verify := func(c *x509.Certificate) (*x509.Certificate, error) {
		if _, err := c.Verify(x509.VerifyOptions{Roots: s.roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return nil, deviceErr("client certificate not issued by this server: %v", err)
		}
		return c, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return verify(r.TLS.PeerCertificates[0])
	}
	if h := r.Header.Get("Client-Cert"); h != "" && s.trustedProxy(r) {
		// RFC 9440: the DER certificate as a byte sequence, :base64:.
		der, err := base64.StdEncoding.DecodeString(strings.Trim(strings.TrimSpace(h), ":"))
		if err != nil {
			return nil, deviceErr("malformed Client-Cert header")
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, deviceErr("malformed Client-Cert certificate")
		}
		return verify(c)
	}
	return apple.VerifyMdmSignature(r.Header.Get("Mdm-Signature"), body, s.roots, now)
}

// AuthenticateDevice authenticates a request from an enrolled device as
// check-ins are authenticated (TLS client certificate, RFC 9440 from a
// trusted proxy, or Mdm-Signature over the body) and returns the body,
// the device's identity certificate and its enrollment.
func (s *Service) AuthenticateDevice(r *http.Request, contentType string) ([]byte, *x509.Certificate, *mdmd.AppleEnrollment, error) {
	body, cert, err := s.readRequest(r, contentType)
	if err != nil {
		return nil, nil, nil, err
	}
	enr, err := s.st.ResolveAppleIdentity(r.Context(), apple.CertFingerprint(cert))
	if err != nil {
		return nil, nil, nil, err
	}
	return body, cert, enr, nil
}

// resolve maps a certificate to its enrollment and checks that the
// message's UDID is the one the certificate was bound to.
func (s *Service) resolve(ctx context.Context, cert *x509.Certificate, udid string) (*mdmd.AppleEnrollment, error) {
	enr, err := s.st.ResolveAppleIdentity(ctx, apple.CertFingerprint(cert))
	if err != nil {
		return nil, err
	}
	if enr.UDID != udid {
		return nil, deviceErr("the identity certificate belongs to another device")
	}
	return enr, nil
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := mdmd.ErrorCode(err)
	if code == mdmd.EDeviceAuth || code == mdmd.EInvalid {
		s.log.Warn("device request refused", "err", err, "remote", r.RemoteAddr, "path", web.LogPath(r),
			"request_id", web.RequestID(r.Context()))
	}
	web.WriteError(w, r, s.log, err)
}

func (s *Service) audit(ctx context.Context, deviceID, udid, action, outcome string, details any) {
	e := &mdmd.AuditEvent{ActorType: mdmd.ActorDevice, Actor: udid, Action: action, TargetType: "device",
		TargetID: deviceID, Outcome: outcome}
	if details != nil {
		e.Details, _ = json.Marshal(details)
	}
	if err := s.st.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit append failed", "err", err, "action", action)
	}
}

// checkinMessage holds every check-in field mdmd reads.
type checkinMessage struct {
	MessageType  string
	UDID         string
	EnrollmentID string
	UserID       string
	Topic        string
	SerialNumber string
	Model        string
	ModelName    string
	ProductName  string
	OSVersion    string
	BuildVersion string
	DeviceName   string
	Token        []byte
	PushMagic    string
	UnlockToken  []byte

	BootstrapToken []byte
}

// ServeCheckin handles the check-in endpoint.
func (s *Service) ServeCheckin(w http.ResponseWriter, r *http.Request) {
	body, cert, err := s.readRequest(r, "application/x-apple-aspen-mdm-checkin")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var msg checkinMessage
	if err := plist.Unmarshal(body, &msg); err != nil {
		s.fail(w, r, mdmd.Errorf(mdmd.EInvalid, "malformed check-in plist: %v", err))
		return
	}
	if err := s.checkin(w, r, cert, &msg); err != nil {
		s.fail(w, r, err)
	}
}

func (s *Service) checkin(w http.ResponseWriter, r *http.Request, cert *x509.Certificate, msg *checkinMessage) error {
	ctx := r.Context()
	switch msg.MessageType {
	case "Authenticate", "TokenUpdate", "CheckOut", "SetBootstrapToken", "GetBootstrapToken",
		"UserAuthenticate", "DeclarativeManagement", "GetToken":
	case "":
		return mdmd.FieldError("MessageType", "required")
	default:
		return mdmd.FieldError("MessageType", "unknown message type %q", msg.MessageType)
	}
	if msg.UDID == "" {
		if msg.EnrollmentID != "" {
			return mdmd.Errorf(mdmd.EInvalid, "User Enrollment (EnrollmentID) is not supported; enroll the device with a profile")
		}
		return mdmd.FieldError("UDID", "required")
	}
	if msg.MessageType == "UserAuthenticate" || msg.UserID != "" {
		// mdmd manages the device channel only; 410 tells the device not to
		// set up a user channel.
		w.WriteHeader(http.StatusGone)
		return nil
	}
	if msg.MessageType == "Authenticate" {
		dev, err := s.st.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: msg.UDID, CertFingerprint: apple.CertFingerprint(cert),
			SerialNumber: msg.SerialNumber, Model: msg.Model, ProductName: msg.ProductName, OSVersion: msg.OSVersion, DeviceName: msg.DeviceName})
		if err != nil {
			return err
		}
		s.audit(ctx, dev.ID, msg.UDID, "device.authenticate", mdmd.OutcomeSuccess, map[string]string{"serial_number": msg.SerialNumber})
		w.WriteHeader(http.StatusOK)
		return nil
	}
	enr, err := s.resolve(ctx, cert, msg.UDID)
	if err != nil {
		return err
	}
	s.markSeen(enr.DeviceID)
	switch msg.MessageType {
	case "TokenUpdate":
		if len(msg.Token) == 0 || msg.PushMagic == "" || msg.Topic == "" {
			return mdmd.Errorf(mdmd.EInvalid, "TokenUpdate needs Token, PushMagic and Topic")
		}
		u := mdmd.AppleTokenUpdate{Topic: msg.Topic, PushToken: hex.EncodeToString(msg.Token), PushMagic: msg.PushMagic}
		if len(msg.UnlockToken) > 0 {
			if u.UnlockTokenSealed, err = s.box.Seal(msg.UnlockToken, "unlock:"+enr.DeviceID); err != nil {
				return err
			}
		}
		if err := s.st.UpdateAppleToken(ctx, enr.DeviceID, u); err != nil {
			return err
		}
		if !enr.TokenValid {
			s.audit(ctx, enr.DeviceID, msg.UDID, "device.enrolled", mdmd.OutcomeSuccess, nil)
			if s.opt.Observer != nil {
				s.opt.Observer.Enrolled(ctx, enr.DeviceID)
			}
		}
	case "CheckOut":
		if err := s.st.EndAppleEnrollment(ctx, enr.DeviceID, mdmd.EnrollmentUnenrolled); err != nil {
			return err
		}
		s.audit(ctx, enr.DeviceID, msg.UDID, "device.checkout", mdmd.OutcomeSuccess, nil)
	case "SetBootstrapToken":
		var sealed []byte
		if len(msg.BootstrapToken) > 0 {
			if sealed, err = s.box.Seal(msg.BootstrapToken, "bootstrap:"+enr.DeviceID); err != nil {
				return err
			}
		}
		if err := s.st.SetAppleBootstrapToken(ctx, enr.DeviceID, sealed); err != nil {
			return err
		}
	case "GetBootstrapToken":
		out := struct {
			BootstrapToken []byte `plist:",omitempty"`
		}{}
		if e, err := s.st.GetAppleEnrollment(ctx, enr.DeviceID); err != nil {
			return err
		} else if len(e.BootstrapSealed) > 0 {
			if out.BootstrapToken, err = s.box.Open(e.BootstrapSealed, "bootstrap:"+enr.DeviceID); err != nil {
				return err
			}
		}
		raw, err := plist.Marshal(out)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/xml")
		w.Write(raw)
		return nil
	case "DeclarativeManagement", "GetToken":
		return mdmd.Errorf(mdmd.EInvalid, "%s is not supported by this server", msg.MessageType)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// ServeConnect handles the command endpoint.
func (s *Service) ServeConnect(w http.ResponseWriter, r *http.Request) {
	body, cert, err := s.readRequest(r, "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.connect(w, r, cert, body); err != nil {
		s.fail(w, r, err)
	}
}

func (s *Service) connect(w http.ResponseWriter, r *http.Request, cert *x509.Certificate, body []byte) error {
	ctx := r.Context()
	rep, status, resultErr, err := commands.ParseAppleReport(body)
	if err != nil {
		return err
	}
	if rep.UDID == "" {
		return mdmd.FieldError("UDID", "required (User Enrollment is not supported)")
	}
	if rep.UserID != "" {
		w.WriteHeader(http.StatusGone)
		return nil
	}
	enr, err := s.resolve(ctx, cert, rep.UDID)
	if err != nil {
		return err
	}
	s.markSeen(enr.DeviceID)
	var next *mdmd.Command
	switch rep.Status {
	case "Idle":
		next, err = s.st.NextCommand(ctx, enr.DeviceID, nil)
	case "NotNow":
		_, err = s.st.RecordCommandResult(ctx, enr.DeviceID, rep.CommandUUID, mdmd.CommandResult{Status: status, Raw: body})
		switch {
		case mdmd.IsCode(err, mdmd.EConflict):
			// The command was finished meanwhile (an admin cancelled it
			// while the device held it): nothing to defer, the device
			// moves on.
			s.log.Info("NotNow for a finished command ignored", "device", enr.DeviceID, "command", rep.CommandUUID)
		case err != nil:
			return err
		}
		next, err = s.st.NextCommandAfterNotNow(ctx, enr.DeviceID)
	default:
		res := mdmd.CommandResult{Status: status, Raw: body, Error: rep.ErrorText()}
		if resultErr != nil {
			res.Error = resultErr.Error()
		}
		cmd, err := s.st.RecordCommandResult(ctx, enr.DeviceID, rep.CommandUUID, res)
		switch {
		case mdmd.IsCode(err, mdmd.EConflict):
			// A second answer to a command that already has its final one
			// (the device did not get our reply and sent it again): the
			// first answer stands, and the device moves on.
			s.log.Info("duplicate command result ignored", "device", enr.DeviceID, "command", rep.CommandUUID)
		case err != nil:
			return err
		default:
			if status == mdmd.CommandAcknowledged && resultErr == nil {
				s.applyResult(ctx, enr, cmd, rep)
			}
			if s.opt.Observer != nil {
				s.opt.Observer.CommandFinished(ctx, enr.DeviceID, cmd)
			}
		}
		// Still the same connection: commands deferred with NotNow wait
		// for the device's next Idle.
		next, err = s.st.NextCommandAfterNotNow(ctx, enr.DeviceID)
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if next == nil {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	payload := next.Payload
	if secret.IsSealed(payload) {
		if payload, err = s.box.Open(payload, commands.PayloadLabel(next.ID)); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Write(payload)
	return nil
}

// applyResult turns an acknowledged result into state: posture, inventory,
// and the end of management after a wipe. Failures are logged; the result
// itself is already stored.
func (s *Service) applyResult(ctx context.Context, enr *mdmd.AppleEnrollment, cmd *mdmd.Command, rep *commands.AppleReport) {
	if p := rep.Posture(enr.DeviceID, s.now()); p != nil {
		if err := s.st.UpsertPosture(ctx, p); err != nil {
			s.log.Error("storing posture failed", "err", err, "device", enr.DeviceID)
		}
	}
	if q := rep.QueryResponses; q != nil {
		u := mdmd.DeviceUpdate{}
		set := func(dst **string, v string) {
			if v != "" {
				*dst = &v
			}
		}
		set(&u.SerialNumber, q.SerialNumber)
		set(&u.Model, firstNonEmpty(q.ProductName, q.Model))
		set(&u.Name, q.DeviceName)
		if _, err := s.st.UpdateDevice(ctx, enr.DeviceID, u); err != nil {
			s.log.Error("updating inventory failed", "err", err, "device", enr.DeviceID)
		}
	}
	if rep.ProfileList != nil {
		ids := make([]string, 0, len(rep.ProfileList))
		for _, p := range rep.ProfileList {
			ids = append(ids, p.PayloadIdentifier)
		}
		details, _ := json.Marshal(map[string]any{"installed_profiles": ids})
		if err := s.st.UpsertPosture(ctx, &mdmd.Posture{DeviceID: enr.DeviceID, ObservedAt: s.now(), Details: details}); err != nil {
			s.log.Error("storing profile list failed", "err", err, "device", enr.DeviceID)
		}
	}
	switch cmd.RequestType {
	case "EraseDevice":
		if err := s.st.EndAppleEnrollment(ctx, enr.DeviceID, mdmd.EnrollmentWiped); err != nil {
			s.log.Error("recording wipe failed", "err", err, "device", enr.DeviceID)
		}
		s.audit(ctx, enr.DeviceID, enr.UDID, "device.wiped", mdmd.OutcomeSuccess, map[string]string{"command": cmd.ID, "mode": "full"})
	case "DeviceLock":
		s.audit(ctx, enr.DeviceID, enr.UDID, "device.locked", mdmd.OutcomeSuccess, map[string]string{"command": cmd.ID})
	case "RemoveProfile":
		s.audit(ctx, enr.DeviceID, enr.UDID, "device.profile_removed", mdmd.OutcomeSuccess, map[string]string{"command": cmd.ID})
	}
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
