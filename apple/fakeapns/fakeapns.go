// Package fakeapns is an in-tree Apple Push Notification service for tests,
// the demo and benchmarks: an HTTP/2 TLS server speaking the APNs provider
// API (POST /3/device/{token}) that requires a client certificate whose
// topic matches the apns-topic header, records every push, can answer 410,
// 429 and 5xx on demand, and hands pushes to simulated devices.
package fakeapns

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mdmd/mdmd/apple/apns"
)

// Push is one accepted notification.
type Push struct {
	Token     string
	Topic     string
	PushMagic string
	PushType  string
	At        time.Time
}

// Server is a fake APNs.
type Server struct {
	srv *httptest.Server

	mu           sync.Mutex
	pushes       []Push
	unregistered map[string]bool
	failures     []int // statuses to answer next, in order
	onPush       func(Push)
	delay        time.Duration
	inFlight     int
	maxInFlight  int
}

// SetDelay makes every answer wait d (to observe concurrency).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// MaxInFlight is the most requests the server has handled at once.
func (s *Server) MaxInFlight() int { s.mu.Lock(); defer s.mu.Unlock(); return s.maxInFlight }

// Start runs a fake APNs on 127.0.0.1 with HTTP/2 and TLS.
func Start() *Server {
	s := &Server{unregistered: map[string]bool{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	s.srv.StartTLS()
	return s
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// RootCAs trusts the server's certificate.
func (s *Server) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return pool
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// OnPush sets a function called (in its own goroutine) for each accepted push.
func (s *Server) OnPush(f func(Push)) {
	s.mu.Lock()
	s.onPush = f
	s.mu.Unlock()
}

// Unregister makes pushes to token answer 410 Unregistered.
func (s *Server) Unregister(token string) {
	s.mu.Lock()
	s.unregistered[token] = true
	s.mu.Unlock()
}

// FailNext makes the next pushes answer these statuses (429, 500, 503…).
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	s.failures = append(s.failures, statuses...)
	s.mu.Unlock()
}

// Pushes returns the accepted pushes so far.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

func apnsID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := strings.ToUpper(hex.EncodeToString(b))
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

func reply(w http.ResponseWriter, id string, status int, reason string) {
	w.Header().Set("apns-id", id)
	if status == http.StatusOK {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"reason": reason}
	if status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	json.NewEncoder(w).Encode(body)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	delay := s.delay
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }()
	if delay > 0 {
		time.Sleep(delay)
	}
	id := r.Header.Get("apns-id")
	if id == "" {
		id = apnsID()
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok || r.ProtoMajor != 2 {
		reply(w, id, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return
	}
	if _, err := hex.DecodeString(token); err != nil || len(token) != 64 {
		reply(w, id, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		reply(w, id, http.StatusForbidden, "MissingProviderToken")
		return
	}
	certTopic, err := apns.TopicOf(r.TLS.PeerCertificates[0])
	topic := r.Header.Get("apns-topic")
	if err != nil || topic != certTopic {
		reply(w, id, http.StatusBadRequest, "TopicDisallowed")
		return
	}
	var body map[string]any
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 5000))
	if err := json.Unmarshal(raw, &body); err != nil {
		reply(w, id, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	magic, _ := body["mdm"].(string)
	if magic == "" {
		reply(w, id, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	s.mu.Lock()
	if len(s.failures) > 0 {
		status := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		reason := map[int]string{429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}[status]
		reply(w, id, status, reason)
		return
	}
	if s.unregistered[token] {
		s.mu.Unlock()
		reply(w, id, http.StatusGone, "Unregistered")
		return
	}
	p := Push{Token: token, Topic: topic, PushMagic: magic, PushType: r.Header.Get("apns-push-type"), At: time.Now()}
	s.pushes = append(s.pushes, p)
	on := s.onPush
	s.mu.Unlock()
	reply(w, id, http.StatusOK, "")
	if on != nil {
		go on(p)
	}
}

// PushCertificate makes a self-signed stand-in for an Apple MDM push
// certificate: its subject UID is the topic, as in Apple's. It is valid
// for the given duration.
func PushCertificate(topic string, valid time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject: pkix.Name{CommonName: "APSP:" + strings.TrimPrefix(topic, "com.apple.mgmt.External."),
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: topic}}},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(valid),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// CAFile writes the server's certificate as PEM to path (for
// --apns-ca-file).
func (s *Server) CAFile(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw}), 0o600)
}
