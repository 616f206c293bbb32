// Package apns wakes Apple devices through the Apple Push Notification
// service with github.com/sideshow/apns2: it keeps the MDM push
// certificate (sealed at rest), derives the topic from it, and sends
// {"mdm": PushMagic} pushes with bounded concurrency and retries,
// recording every outcome.
package apns

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sideshow/apns2"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
)

// KeypairName is the stored key pair of the push certificate.
const KeypairName = "apns-push"

// Production is Apple's push endpoint.
const Production = "https://api.push.apple.com"

// Store is what push needs from storage.
type Store interface {
	GetKeypair(ctx context.Context, name string) (*mdmd.Keypair, error)
	PutKeypair(ctx context.Context, kp *mdmd.Keypair) error
	ApplePushTargets(ctx context.Context, deviceIDs []string) ([]mdmd.AppleEnrollment, error)
	RecordPushes(ctx context.Context, recs []mdmd.PushRecord) error
}

// Config configures pushing.
type Config struct {
	// URL is the APNs endpoint (Production by default; a fake in tests).
	URL string
	// RootCAs verify the endpoint's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Concurrency bounds pushes in flight (default 64).
	Concurrency int
	// Attempts per push for 429 and 5xx answers (default 4).
	Attempts int
	// RetryBase is the first retry delay, doubled each time (default 250ms).
	RetryBase time.Duration
	Logger    *slog.Logger
}

// Service sends pushes.
type Service struct {
	st  Store
	box *secret.Box
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	loaded string // hash of the certificate the client was built from
	client *apns2.Client
	topic  string
}

// New returns the push service.
func New(st Store, box *secret.Box, cfg Config) *Service {
	if cfg.URL == "" {
		cfg.URL = Production
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, box: box, cfg: cfg, log: cfg.Logger}
}

// CertInfo describes the uploaded push certificate.
type CertInfo struct {
	Topic         string    `json:"topic"`
	Subject       string    `json:"subject"`
	NotAfter      time.Time `json:"not_after"`
	ExpiresInDays int       `json:"expires_in_days"`
	// Warning is set when the certificate expires within 30 days or has
	// expired: renew it with the same Apple ID, or every device must
	// enroll again.
	Warning string `json:"warning,omitempty"`
}

var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// TopicOf returns the APNs topic of an MDM push certificate: the UID
// attribute of its subject.
func TopicOf(c *x509.Certificate) (string, error) {
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidUID) {
			if s, ok := n.Value.(string); ok && strings.HasPrefix(s, "com.apple.mgmt.") {
				return s, nil
			}
		}
	}
	return "", mdmd.Errorf(mdmd.EInvalid, "not an MDM push certificate: its subject has no UID starting with com.apple.mgmt.")
}

func info(c *x509.Certificate, now time.Time) (*CertInfo, error) {
	topic, err := TopicOf(c)
	if err != nil {
		return nil, err
	}
	ci := &CertInfo{Topic: topic, Subject: c.Subject.String(), NotAfter: c.NotAfter,
		ExpiresInDays: int(c.NotAfter.Sub(now).Hours() / 24)}
	switch {
	case now.After(c.NotAfter):
		ci.Warning = "the push certificate has expired: devices cannot be woken; renew it with the same Apple ID"
	case c.NotAfter.Sub(now) < 30*24*time.Hour:
		ci.Warning = fmt.Sprintf("the push certificate expires in %d days; renew it with the same Apple ID", ci.ExpiresInDays)
	}
	return ci, nil
}

// UploadPEM stores a push certificate given as PEM certificate and key.
func (s *Service) UploadPEM(ctx context.Context, certPEM, keyPEM []byte) (*CertInfo, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "certificate and key do not form a pair: %v", err)
	}
	return s.store(ctx, pair)
}

// UploadP12 stores a push certificate given as PKCS#12 (modern AES
// encrypted files included, which apns2's own loader cannot read).
func (s *Service) UploadP12(ctx context.Context, p12 []byte, password string) (*CertInfo, error) {
	key, cert, _, err := pkcs12.DecodeChain(p12, password)
	if err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "cannot read the .p12 (wrong password?): %v", err)
	}
	return s.store(ctx, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
}

func (s *Service) store(ctx context.Context, pair tls.Certificate) (*CertInfo, error) {
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "certificate: %v", err)
	}
	ci, err := info(leaf, time.Now())
	if err != nil {
		return nil, err
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, mdmd.Errorf(mdmd.EInvalid, "the certificate expired on %s", leaf.NotAfter.Format("2006-01-02"))
	}
	der, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "private key: %v", err)
	}
	sealed, err := s.box.Seal(der, "keypair:"+KeypairName)
	if err != nil {
		return nil, err
	}
	var chain []byte
	for _, c := range pair.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := s.st.PutKeypair(ctx, &mdmd.Keypair{Name: KeypairName, CertPEM: string(chain), KeySealed: sealed}); err != nil {
		return nil, err
	}
	return ci, nil
}

// errNoCert means no push certificate was uploaded yet.
var errNoCert = mdmd.Errorf(mdmd.EConflict, "no APNs push certificate: upload one first")

// Info describes the stored push certificate.
func (s *Service) Info(ctx context.Context) (*CertInfo, error) {
	kp, err := s.st.GetKeypair(ctx, KeypairName)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, errNoCert
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(kp.CertPEM))
	if block == nil {
		return nil, errors.New("stored push certificate is not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	return info(c, time.Now())
}

// Topic returns the topic of the stored push certificate.
func (s *Service) Topic(ctx context.Context) (string, error) {
	ci, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	return ci.Topic, nil
}

// clientFor returns an apns2 client for the stored certificate, rebuilt
// when another replica (or an admin) replaced it.
func (s *Service) clientFor(ctx context.Context) (*apns2.Client, string, error) {
	kp, err := s.st.GetKeypair(ctx, KeypairName)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, "", errNoCert
	}
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(append([]byte(kp.CertPEM), kp.KeySealed...))
	version := string(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil && s.loaded == version {
		return s.client, s.topic, nil
	}
	der, err := s.box.Open(kp.KeySealed, "keypair:"+KeypairName)
	if err != nil {
		return nil, "", err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, "", err
	}
	var pair tls.Certificate
	rest := []byte(kp.CertPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		pair.Certificate = append(pair.Certificate, block.Bytes)
	}
	if len(pair.Certificate) == 0 {
		return nil, "", errors.New("stored push certificate is empty")
	}
	pair.PrivateKey = key
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, "", err
	}
	topic, err := TopicOf(leaf)
	if err != nil {
		return nil, "", err
	}
	client := apns2.NewClient(pair)
	client.Host = strings.TrimSuffix(s.cfg.URL, "/")
	client.HTTPClient = &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     5 * time.Minute,
		},
	}
	s.client, s.loaded, s.topic = client, version, topic
	return client, topic, nil
}

// Push wakes the given devices (those with a valid push token) and
// records each outcome. It fails only when nothing could be attempted (no
// certificate, the database); individual failures are outcomes.
func (s *Service) Push(ctx context.Context, deviceIDs []string) ([]mdmd.PushRecord, error) {
	targets, err := s.st.ApplePushTargets(ctx, deviceIDs)
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	client, topic, err := s.clientFor(ctx)
	if err != nil {
		return nil, err
	}
	recs := make([]mdmd.PushRecord, len(targets))
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			recs[i] = s.pushOne(ctx, client, topic, &targets[i])
		}(i)
	}
	wg.Wait()
	if err := s.st.RecordPushes(context.WithoutCancel(ctx), recs); err != nil {
		return recs, err
	}
	return recs, nil
}

func (s *Service) pushOne(ctx context.Context, client *apns2.Client, topic string, t *mdmd.AppleEnrollment) mdmd.PushRecord {
	payload, _ := json.Marshal(map[string]string{"mdm": t.PushMagic})
	n := &apns2.Notification{DeviceToken: t.PushToken, Topic: topic, Payload: payload, Priority: apns2.PriorityHigh,
		PushType: apns2.PushTypeMDM, Expiration: time.Now().Add(24 * time.Hour)}
	rec := mdmd.PushRecord{DeviceID: t.DeviceID, Token: t.PushToken}
	for attempt := 1; ; attempt++ {
		resp, err := client.PushWithContext(ctx, n)
		rec.At = time.Now()
		switch {
		case err != nil:
			rec.Status, rec.Reason = 0, err.Error()
		case resp.StatusCode == http.StatusOK:
			rec.Status, rec.APNsID, rec.Result, rec.Reason = 200, resp.ApnsID, mdmd.PushSent, ""
			return rec
		case resp.StatusCode == http.StatusGone:
			rec.Status, rec.APNsID, rec.Result, rec.Reason = 410, resp.ApnsID, mdmd.PushUnregistered, resp.Reason
			return rec
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			rec.Status, rec.APNsID, rec.Reason = resp.StatusCode, resp.ApnsID, resp.Reason
		default:
			rec.Status, rec.APNsID, rec.Result, rec.Reason = resp.StatusCode, resp.ApnsID, mdmd.PushRejected, resp.Reason
			s.log.Warn("APNs rejected a push", "device", t.DeviceID, "status", resp.StatusCode, "reason", resp.Reason)
			return rec
		}
		if attempt >= s.cfg.Attempts || ctx.Err() != nil {
			rec.Result = mdmd.PushFailed
			s.log.Warn("push failed after retries", "device", t.DeviceID, "status", rec.Status, "reason", rec.Reason)
			return rec
		}
		d := s.cfg.RetryBase << (attempt - 1)
		d = time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}
