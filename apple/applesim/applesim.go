// Package applesim simulates iPhones that speak Apple's MDM protocol on
// the wire: each verifies the signed enrollment profile, obtains its
// identity with SCEP (challenge, then renewal), signs every request with
// Mdm-Signature, wakes on pushes from the fake APNs and answers commands
// with configurable posture, NotNow and errors. Tests, the demo and the
// benchmarks use it.
package applesim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/profiles"
)

// Posture is what the device reports about itself.
type Posture struct {
	OSVersion         string
	BuildVersion      string
	ProductName       string
	ModelName         string
	PasscodePresent   bool
	PasscodeCompliant bool
	// EncryptionCaps is SecurityInfo's HardwareEncryptionCaps (3 = full).
	EncryptionCaps int
	Supervised     bool
	ActivationLock bool
	// Jailbroken is not reported over MDM (iOS has no such query); a
	// simulated mobile threat defense partner reads it from the device.
	Jailbroken bool
}

// Posture returns what the device currently reports about itself.
func (d *Device) Posture() Posture { return d.currentPosture() }

// DefaultPosture is a healthy, current iPhone.
var DefaultPosture = Posture{OSVersion: "18.1", BuildVersion: "22B83", ProductName: "iPhone16,2", ModelName: "iPhone",
	PasscodePresent: true, PasscodeCompliant: true, EncryptionCaps: 3, Supervised: false}

// Device is one simulated iPhone.
type Device struct {
	UDID   string
	Serial string
	Name   string
	HTTP   *http.Client

	connMu  sync.Mutex // one MDM connection at a time, as on a real device
	mu      sync.Mutex
	posture Posture
	notNow  map[string]int
	fail    map[string]bool

	key, nextKey          *rsa.PrivateKey
	cert                  *x509.Certificate
	scepURL               string
	serverURL, checkinURL string
	topic                 string
	token                 []byte
	magic                 string
	unlock                []byte
	profiles              map[string][]byte
	enrolled, locked      bool
	erased                bool
	lockMessage           string
	handled               []string
}

// New returns a device that is not enrolled yet.
func New(udid, serial string, p Posture) *Device {
	return &Device{UDID: udid, Serial: serial, Name: "iPhone " + serial, HTTP: http.DefaultClient, posture: p,
		notNow: map[string]int{}, fail: map[string]bool{}, profiles: map[string][]byte{}}
}

// SetPosture changes what the device reports from now on.
func (d *Device) SetPosture(p Posture) { d.mu.Lock(); d.posture = p; d.mu.Unlock() }

// NotNowFor makes the device answer NotNow to the next n commands of a type.
func (d *Device) NotNowFor(requestType string, n int) {
	d.mu.Lock()
	d.notNow[requestType] = n
	d.mu.Unlock()
}

// FailFor makes the device answer Error to every command of a type.
func (d *Device) FailFor(requestType string) { d.mu.Lock(); d.fail[requestType] = true; d.mu.Unlock() }

// State is what commands have done to the device.
type State struct {
	Enrolled, Locked, Erased bool
	LockMessage              string
	Profiles                 []string
	Handled                  []string
}

// State returns the device's current state.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := State{Enrolled: d.enrolled, Locked: d.locked, Erased: d.erased, LockMessage: d.lockMessage,
		Handled: append([]string(nil), d.handled...)}
	for id := range d.profiles {
		st.Profiles = append(st.Profiles, id)
	}
	return st
}

// PushToken is the device's APNs token, hex encoded as APNs uses it.
func (d *Device) PushToken() string { return hex.EncodeToString(d.token) }

// Cert and Key are the device's identity (for tests that forge requests).
func (d *Device) Cert() *x509.Certificate { return d.cert }
func (d *Device) Key() *rsa.PrivateKey    { return d.key }

// ServerURL and CheckInURL are the endpoints from the profile.
func (d *Device) ServerURL() string  { return d.serverURL }
func (d *Device) CheckInURL() string { return d.checkinURL }

// Enroll downloads the profile at profileURL, checks that it is signed by
// an identity chaining to trust, and installs it: SCEP, Authenticate,
// TokenUpdate.
func (d *Device) Enroll(ctx context.Context, profileURL string, trust *x509.CertPool) error {
	raw, ct, err := d.get(ctx, profileURL)
	if err != nil {
		return err
	}
	if ct != "application/x-apple-aspen-config" {
		return fmt.Errorf("profile content type %q", ct)
	}
	xml, _, err := apple.VerifySigned(raw, trust)
	if err != nil {
		return fmt.Errorf("profile signature: %w", err)
	}
	return d.Install(ctx, xml)
}

// Install installs an unsigned enrollment profile (as third-party
// simulators do).
func (d *Device) Install(ctx context.Context, xml []byte) error {
	var prof struct {
		PayloadIdentifier string
		PayloadContent    []map[string]any
	}
	if err := plist.Unmarshal(xml, &prof); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	var challenge string
	for _, p := range prof.PayloadContent {
		switch p["PayloadType"] {
		case "com.apple.security.scep":
			c, _ := p["PayloadContent"].(map[string]any)
			d.scepURL, _ = c["URL"].(string)
			challenge, _ = c["Challenge"].(string)
		case "com.apple.mdm":
			d.serverURL, _ = p["ServerURL"].(string)
			d.checkinURL, _ = p["CheckInURL"].(string)
			d.topic, _ = p["Topic"].(string)
			if sign, _ := p["SignMessage"].(bool); !sign {
				return fmt.Errorf("profile does not ask for signed messages")
			}
		}
	}
	if d.scepURL == "" || d.serverURL == "" || challenge == "" {
		return fmt.Errorf("profile lacks SCEP or MDM payload")
	}
	if d.checkinURL == "" {
		d.checkinURL = d.serverURL
	}
	if err := d.scepEnroll(ctx, challenge); err != nil {
		return fmt.Errorf("SCEP: %w", err)
	}
	d.mu.Lock()
	d.profiles[prof.PayloadIdentifier] = xml
	d.token = randBytes(32)
	d.magic = strings.ToUpper(hex.EncodeToString(randBytes(16)))
	d.unlock = randBytes(48)
	d.erased = false
	d.mu.Unlock()
	p := d.currentPosture()
	if err := d.checkin(ctx, map[string]any{"MessageType": "Authenticate", "UDID": d.UDID, "Topic": d.topic,
		"SerialNumber": d.Serial, "Model": p.ModelName, "ModelName": p.ModelName, "ProductName": p.ProductName,
		"OSVersion": p.OSVersion, "BuildVersion": p.BuildVersion, "DeviceName": d.Name}); err != nil {
		return fmt.Errorf("Authenticate: %w", err)
	}
	if err := d.checkin(ctx, map[string]any{"MessageType": "TokenUpdate", "UDID": d.UDID, "Topic": d.topic,
		"Token": d.token, "PushMagic": d.magic, "UnlockToken": d.unlock}); err != nil {
		return fmt.Errorf("TokenUpdate: %w", err)
	}
	d.mu.Lock()
	d.enrolled = true
	d.mu.Unlock()
	return nil
}

func (d *Device) currentPosture() Posture { d.mu.Lock(); defer d.mu.Unlock(); return d.posture }

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (d *Device) get(ctx context.Context, u string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, raw)
	}
	return raw, resp.Header.Get("Content-Type"), nil
}

func (d *Device) caCert(ctx context.Context) (*x509.Certificate, error) {
	raw, _, err := d.get(ctx, d.scepURL+"?operation=GetCACert")
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(raw)
}

// UseKey makes the next enrollment use key instead of generating one (a
// load generator pre-generates keys so that its own key generation is not
// measured).
func (d *Device) UseKey(key *rsa.PrivateKey) { d.mu.Lock(); d.nextKey = key; d.mu.Unlock() }

// scepEnroll gets an identity with the profile's challenge.
func (d *Device) scepEnroll(ctx context.Context, challenge string) error {
	d.mu.Lock()
	key := d.nextKey
	d.nextKey = nil
	d.mu.Unlock()
	var err error
	if key == nil {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return err
		}
	}
	signer, err := selfSigned(key, d.UDID)
	if err != nil {
		return err
	}
	cert, err := d.scepRequest(ctx, key, signer, key, scep.PKCSReq, challenge)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.key, d.cert = key, cert
	d.mu.Unlock()
	return nil
}

// Renew replaces the identity with SCEP renewal, signed by the current one.
func (d *Device) Renew(ctx context.Context) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	d.mu.Lock()
	oldCert, oldKey := d.cert, d.key
	d.mu.Unlock()
	cert, err := d.scepRequest(ctx, key, oldCert, oldKey, scep.RenewalReq, "")
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.key, d.cert = key, cert
	d.mu.Unlock()
	return nil
}

func (d *Device) scepRequest(ctx context.Context, key *rsa.PrivateKey, signerCert *x509.Certificate, signerKey *rsa.PrivateKey,
	mt scep.MessageType, challenge string) (*x509.Certificate, error) {
	ca, err := d.caCert(ctx)
	if err != nil {
		return nil, err
	}
	der, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: d.UDID}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{MessageType: mt, Recipients: []*x509.Certificate{ca},
		SignerKey: signerKey, SignerCert: signerCert})
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", d.scepURL+"?operation=PKIOperation", bytes.NewReader(msg.Raw))
	req.Header.Set("Content-Type", "application/x-pki-message")
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("PKIOperation: %s: %s", resp.Status, raw)
	}
	rep, err := scep.ParsePKIMessage(raw, scep.WithCACerts([]*x509.Certificate{ca}))
	if err != nil {
		return nil, err
	}
	if rep.CertRepMessage == nil || rep.PKIStatus != scep.SUCCESS {
		info := ""
		if rep.CertRepMessage != nil {
			info = rep.FailInfo.String()
		}
		return nil, fmt.Errorf("SCEP refused: %s", info)
	}
	if err := rep.DecryptPKIEnvelope(signerCert, signerKey); err != nil {
		return nil, err
	}
	return rep.CertRepMessage.Certificate, nil
}

func selfSigned(key *rsa.PrivateKey, cn string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Sign returns the Mdm-Signature header for body.
func (d *Device) Sign(body []byte) (string, error) {
	d.mu.Lock()
	cert, key := d.cert, d.key
	d.mu.Unlock()
	sig, err := apple.SignDetached(body, cert, key)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Do sends a signed PUT and returns the status and body.
func (d *Device) Do(ctx context.Context, u, contentType string, body []byte) (int, []byte, error) {
	sig, err := d.Sign(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "PUT", u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Mdm-Signature", sig)
	req.Header.Set("User-Agent", "MDM/1.0")
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, nil
}

func (d *Device) checkin(ctx context.Context, msg map[string]any) error {
	body, err := plist.Marshal(msg)
	if err != nil {
		return err
	}
	status, raw, err := d.Do(ctx, d.checkinURL, "application/x-apple-aspen-mdm-checkin", body)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("check-in %s: %d: %s", msg["MessageType"], status, raw)
	}
	return nil
}

// CheckIn sends a check-in message and returns the status and body.
func (d *Device) CheckIn(ctx context.Context, msg map[string]any) (int, []byte, error) {
	body, err := plist.Marshal(msg)
	if err != nil {
		return 0, nil, err
	}
	return d.Do(ctx, d.checkinURL, "application/x-apple-aspen-mdm-checkin", body)
}

// CheckOut tells the server the device left management.
func (d *Device) CheckOut(ctx context.Context) error {
	err := d.checkin(ctx, map[string]any{"MessageType": "CheckOut", "UDID": d.UDID, "Topic": d.topic})
	d.mu.Lock()
	d.enrolled = false
	d.mu.Unlock()
	return err
}

// Woken is what the device does on an MDM push: it connects, unless it
// has left management (removed its enrollment profile, checked out or
// been erased), in which case it ignores the push as a real one does.
func (d *Device) Woken(ctx context.Context) (int, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	d.mu.Lock()
	enrolled := d.enrolled
	d.mu.Unlock()
	if !enrolled {
		return 0, nil
	}
	return d.connect(ctx)
}

// Connect polls the command endpoint like a woken device: Idle, then one
// answer per command, until the server has nothing more. It returns the
// number of commands it answered.
func (d *Device) Connect(ctx context.Context) (int, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	return d.connect(ctx)
}

func (d *Device) connect(ctx context.Context) (int, error) {
	report := map[string]any{"UDID": d.UDID, "Status": "Idle"}
	n := 0
	for {
		body, err := plist.Marshal(report)
		if err != nil {
			return n, err
		}
		status, raw, err := d.Do(ctx, d.serverURL, "application/x-apple-aspen-mdm", body)
		if err != nil {
			return n, err
		}
		if status != 200 {
			return n, fmt.Errorf("command endpoint: %d: %s", status, raw)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return n, nil
		}
		var cmd struct {
			CommandUUID string
			Command     map[string]any
		}
		if err := plist.Unmarshal(raw, &cmd); err != nil {
			return n, fmt.Errorf("command plist: %w", err)
		}
		n++
		report, err = d.handle(ctx, cmd.CommandUUID, cmd.Command)
		if errors.Is(err, errCheckedOut) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if cmd.Command["RequestType"] == "EraseDevice" && report["Status"] == "Acknowledged" {
			// The device acknowledges, then erases itself and is gone.
			body, err := plist.Marshal(report)
			if err != nil {
				return n, err
			}
			_, _, err = d.Do(ctx, d.serverURL, "application/x-apple-aspen-mdm", body)
			return n, err
		}
		if n > 10000 {
			return n, fmt.Errorf("server keeps sending commands")
		}
	}
}

// handle executes one command and returns the report that answers it.
func (d *Device) handle(ctx context.Context, uuid string, c map[string]any) (map[string]any, error) {
	rt, _ := c["RequestType"].(string)
	rep := map[string]any{"UDID": d.UDID, "CommandUUID": uuid, "Status": "Acknowledged"}
	d.mu.Lock()
	d.handled = append(d.handled, rt)
	if d.notNow[rt] > 0 {
		d.notNow[rt]--
		d.mu.Unlock()
		rep["Status"] = "NotNow"
		return rep, nil
	}
	if d.fail[rt] {
		d.mu.Unlock()
		rep["Status"] = "Error"
		rep["ErrorChain"] = []map[string]any{{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
			"LocalizedDescription": "Simulated failure", "USEnglishDescription": "Simulated failure"}}
		return rep, nil
	}
	p := d.posture
	d.mu.Unlock()
	checkOut := false
	switch rt {
	case "DeviceInformation":
		all := map[string]any{"UDID": d.UDID, "DeviceName": d.Name, "OSVersion": p.OSVersion, "BuildVersion": p.BuildVersion,
			"ModelName": p.ModelName, "Model": p.ModelName, "ProductName": p.ProductName, "SerialNumber": d.Serial,
			"DeviceCapacity": 128.0, "AvailableDeviceCapacity": 64.5, "IsSupervised": p.Supervised,
			"IsActivationLockEnabled": p.ActivationLock, "IsDeviceLocatorServiceEnabled": true, "IsCloudBackupEnabled": false,
			"WiFiMAC": "f0:18:98:00:00:01", "BluetoothMAC": "f0:18:98:00:00:02"}
		q := map[string]any{}
		queries, _ := c["Queries"].([]any)
		for _, k := range queries {
			if v, ok := all[fmt.Sprint(k)]; ok {
				q[fmt.Sprint(k)] = v
			}
		}
		if len(queries) == 0 {
			q = all
		}
		rep["QueryResponses"] = q
	case "SecurityInfo":
		rep["SecurityInfo"] = map[string]any{"HardwareEncryptionCaps": p.EncryptionCaps, "PasscodePresent": p.PasscodePresent,
			"PasscodeCompliant": p.PasscodeCompliant, "PasscodeCompliantWithProfiles": p.PasscodeCompliant,
			"PasscodeLockGracePeriodEnforced": 0}
	case "ProfileList":
		var list []map[string]any
		d.mu.Lock()
		for id := range d.profiles {
			list = append(list, map[string]any{"PayloadIdentifier": id, "PayloadDisplayName": id, "PayloadUUID": id,
				"IsManaged": true, "PayloadVersion": 1})
		}
		d.mu.Unlock()
		rep["ProfileList"] = list
	case "InstalledApplicationList":
		rep["InstalledApplicationList"] = []map[string]any{
			{"Identifier": "com.apple.mobilesafari", "Name": "Safari", "ShortVersion": p.OSVersion, "Version": "8620.1"},
			{"Identifier": "com.example.mail", "Name": "Work Mail", "ShortVersion": "5.2", "Version": "520"}}
	case "CertificateList":
		rep["CertificateList"] = []map[string]any{{"CommonName": d.UDID, "IsIdentity": true, "Data": d.cert.Raw}}
	case "DeviceLock":
		d.mu.Lock()
		d.locked = true
		d.lockMessage, _ = c["Message"].(string)
		d.mu.Unlock()
	case "EraseDevice":
		d.mu.Lock()
		d.erased, d.enrolled, d.locked = true, false, false
		d.profiles = map[string][]byte{}
		d.mu.Unlock()
	case "ClearPasscode":
		tok, _ := c["UnlockToken"].([]byte)
		if !bytes.Equal(tok, d.unlock) {
			rep["Status"] = "Error"
			rep["ErrorChain"] = []map[string]any{{"ErrorCode": 12078, "ErrorDomain": "MCMDMErrorDomain",
				"USEnglishDescription": "Invalid unlock token"}}
			break
		}
		d.mu.Lock()
		d.posture.PasscodePresent = false
		d.mu.Unlock()
	case "InstallProfile":
		payload, _ := c["Payload"].([]byte)
		if p7, err := pkcs7.Parse(payload); err == nil {
			payload = p7.Content
		}
		var prof struct {
			PayloadIdentifier string
			PayloadContent    []map[string]any
		}
		if err := plist.Unmarshal(payload, &prof); err != nil || prof.PayloadIdentifier == "" {
			rep["Status"] = "Error"
			rep["ErrorChain"] = []map[string]any{{"ErrorCode": 1000, "ErrorDomain": "MCProfileErrorDomain",
				"USEnglishDescription": "The profile is malformed"}}
			break
		}
		// A new copy of the enrollment profile renews the identity: SCEP
		// with its challenge, then the new certificate is used.
		for _, p := range prof.PayloadContent {
			if p["PayloadType"] != "com.apple.security.scep" || prof.PayloadIdentifier != profiles.EnrollmentIdentifier {
				continue
			}
			c, _ := p["PayloadContent"].(map[string]any)
			challenge, _ := c["Challenge"].(string)
			if err := d.scepEnroll(ctx, challenge); err != nil {
				rep["Status"] = "Error"
				rep["ErrorChain"] = []map[string]any{{"ErrorCode": 22013, "ErrorDomain": "MCSCEPErrorDomain",
					"USEnglishDescription": "SCEP failed: " + err.Error()}}
				return rep, nil
			}
		}
		d.mu.Lock()
		d.profiles[prof.PayloadIdentifier] = payload
		d.mu.Unlock()
	case "RemoveProfile":
		id, _ := c["Identifier"].(string)
		d.mu.Lock()
		_, ok := d.profiles[id]
		if ok {
			delete(d.profiles, id)
		}
		if id == profiles.EnrollmentIdentifier && ok {
			// Removing the enrollment profile removes every managed
			// profile with it, and the device checks out.
			d.profiles = map[string][]byte{}
			d.enrolled = false
			checkOut = true
		}
		d.mu.Unlock()
		if !ok {
			rep["Status"] = "Error"
			rep["ErrorChain"] = []map[string]any{{"ErrorCode": 1001, "ErrorDomain": "MCProfileErrorDomain",
				"USEnglishDescription": "The profile is not installed"}}
		}
	default:
		rep["Status"] = "CommandFormatError"
	}
	if checkOut {
		// The acknowledgement goes first; then the device checks out.
		body, err := plist.Marshal(rep)
		if err != nil {
			return nil, err
		}
		if _, _, err := d.Do(ctx, d.serverURL, "application/x-apple-aspen-mdm", body); err != nil {
			return nil, err
		}
		if err := d.CheckOut(ctx); err != nil {
			return nil, err
		}
		return map[string]any{"UDID": d.UDID, "Status": "Idle"}, errCheckedOut
	}
	return rep, nil
}

var errCheckedOut = fmt.Errorf("device checked out")

// DropProfile removes an installed profile as a user with the right to
// could, without telling the server (drift).
func (d *Device) DropProfile(identifier string) {
	d.mu.Lock()
	delete(d.profiles, identifier)
	d.mu.Unlock()
}
