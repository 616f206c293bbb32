// Package android manages Android devices through Google's Android
// Management API (AMAPI) with the official Go client: the enterprise
// binding, enrollment tokens with QR codes, and the Pub/Sub push endpoint
// through which AMAPI reports enrollments, device status and command
// results.
package android

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
)

// Store is what the Android integration needs from storage.
type Store interface {
	GetSetting(ctx context.Context, key string) (string, error)
	PutSetting(ctx context.Context, key, value string) error
	CreateAndroidToken(ctx context.Context, t *mdmd.AndroidToken) error
	GetAndroidToken(ctx context.Context, id string) (*mdmd.AndroidToken, error)
	ListAndroidTokens(ctx context.Context) ([]mdmd.AndroidToken, error)
	RevokeAndroidToken(ctx context.Context, id string) (*mdmd.AndroidToken, error)
	ApplyAndroidUpdate(ctx context.Context, u mdmd.AndroidUpdate) (string, string, error)
	TakeRate(ctx context.Context, name string, limit int, window time.Duration) (bool, time.Time, error)
	AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
}

// Config configures the integration.
type Config struct {
	// Endpoint overrides Google's (the fake AMAPI in tests and the demo,
	// or an on-premises proxy).
	Endpoint string
	// CredentialsFile is a Google service-account key; without one,
	// requests carry no credentials (only sensible with Endpoint).
	CredentialsFile string
	ProjectID       string
	// PubsubTopic receives AMAPI's notifications (projects/P/topics/T).
	PubsubTopic string
	PublicURL   string
	Logger      *slog.Logger
	// Rate is the client-side limit on AMAPI calls per Window, for all
	// replicas together (AMAPI allows 1,000 per 100 s).
	Rate   int
	Window time.Duration
}

// Service is the Android integration.
type Service struct {
	st  Store
	box *secret.Box
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	client *am.Service
	cmds   *Commands

	secretMu  sync.Mutex
	secretVal string
	secretEnt string
	secretAt  time.Time
}

// New returns the integration.
func New(st Store, box *secret.Box, cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 900
	}
	if cfg.Window <= 0 {
		cfg.Window = 100 * time.Second
	}
	return &Service{st: st, box: box, cfg: cfg, log: cfg.Logger}
}

// The limit is counted in n sub-windows of Window/n, each allowing
// Rate/(n+1) calls: any span of length Window, wherever it starts, overlaps
// at most n+1 sub-windows, so it never holds more than Rate calls (fixed
// windows would allow twice the rate across a boundary). Queued work gets
// 90% of that; the rest is kept for requests an admin waits for.
func (s *Service) subWindows() (n int, window time.Duration) {
	n = min(10, max(1, s.cfg.Rate-1))
	return n, s.cfg.Window / time.Duration(n)
}

func (s *Service) takeWithin(ctx context.Context, share float64) (bool, time.Time, error) {
	n, window := s.subWindows()
	limit := max(1, int(share*float64(s.cfg.Rate)/float64(n+1)))
	return s.st.TakeRate(ctx, "amapi", limit, window)
}

// take counts one queued AMAPI call against the shared limit. It reports
// when the next sub-window opens if the limit is reached.
func (s *Service) take(ctx context.Context) (bool, time.Time, error) {
	return s.takeWithin(ctx, 0.9)
}

// takeNow is for calls an admin waits for: they may use the reserve, wait
// up to a few seconds for the next sub-window, and past that fail with
// ERateLimited.
func (s *Service) takeNow(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, next, err := s.takeWithin(ctx, 1)
		if err != nil || ok {
			return err
		}
		if next.After(deadline) {
			return mdmd.Errorf(mdmd.ERateLimited, "the Android Management API rate limit is reached; retry after %s", next.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(next) + time.Millisecond):
		}
	}
}

// SetCommands connects the command sender (for COMMAND notifications).
func (s *Service) SetCommands(c *Commands) { s.cmds = c }

// Configured reports whether AMAPI can be reached (credentials or an endpoint).
func (s *Service) Configured() bool { return s.cfg.CredentialsFile != "" || s.cfg.Endpoint != "" }

// Client returns the AMAPI client.
func (s *Service) Client(ctx context.Context) (*am.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	if !s.Configured() {
		return nil, mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured: set --amapi-credentials (a service-account key) or --amapi-endpoint")
	}
	var opts []option.ClientOption
	if s.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimSuffix(s.cfg.Endpoint, "/")+"/"))
	}
	if s.cfg.CredentialsFile != "" {
		opts = append(opts, option.WithCredentialsFile(s.cfg.CredentialsFile))
	} else {
		opts = append(opts, option.WithoutAuthentication())
	}
	c, err := am.NewService(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, err
	}
	s.client = c
	return c, nil
}

// Enterprise is the bound Android enterprise.
type Enterprise struct {
	Name              string   `json:"name"`
	DisplayName       string   `json:"display_name"`
	PubsubTopic       string   `json:"pubsub_topic,omitempty"`
	NotificationTypes []string `json:"notification_types,omitempty"`
	PushSecretSealed  []byte   `json:"push_secret_sealed"`
}

const (
	settingEnterprise = "android.enterprise"
	settingSignup     = "android.signup"
	pushSecretLabel   = "android:push-secret"
)

// NotificationTypes are the AMAPI notifications mdmd subscribes to.
var NotificationTypes = []string{"ENROLLMENT", "STATUS_REPORT", "COMMAND"}

// GetEnterprise returns the bound enterprise.
func (s *Service) GetEnterprise(ctx context.Context) (*Enterprise, error) {
	raw, err := s.st.GetSetting(ctx, settingEnterprise)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, mdmd.Errorf(mdmd.EConflict, "no Android enterprise is bound: sign up or bind one first")
	}
	if err != nil {
		return nil, err
	}
	var e Enterprise
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// StartSignup asks AMAPI for a sign-up URL for a new enterprise.
func (s *Service) StartSignup(ctx context.Context, callbackURL string) (*am.SignupUrl, error) {
	if s.cfg.ProjectID == "" {
		return nil, mdmd.Errorf(mdmd.EConflict, "set --amapi-project (the Google Cloud project) to sign up an enterprise")
	}
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	if callbackURL == "" {
		// The console's Android page reads the token Google appends.
		callbackURL = s.cfg.PublicURL + "/settings/android"
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	u, err := c.SignupUrls.Create().ProjectId(s.cfg.ProjectID).CallbackUrl(callbackURL).Context(ctx).Do()
	if err != nil {
		return nil, amapiErr(err)
	}
	if err := s.st.PutSetting(ctx, settingSignup, u.Name); err != nil {
		return nil, err
	}
	return u, nil
}

// CompleteSignup creates the enterprise with the token Google's sign-up
// page gave, and binds it.
func (s *Service) CompleteSignup(ctx context.Context, signupURLName, enterpriseToken, displayName string) (*Enterprise, error) {
	if signupURLName == "" || enterpriseToken == "" {
		return nil, mdmd.FieldError("enterprise_token", "signup_url_name and enterprise_token are required")
	}
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	e := &am.Enterprise{EnterpriseDisplayName: displayName, PubsubTopic: s.cfg.PubsubTopic}
	if s.cfg.PubsubTopic != "" {
		e.EnabledNotificationTypes = NotificationTypes
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	created, err := c.Enterprises.Create(e).ProjectId(s.cfg.ProjectID).SignupUrlName(signupURLName).
		EnterpriseToken(enterpriseToken).Context(ctx).Do()
	if err != nil {
		return nil, amapiErr(err)
	}
	return s.bind(ctx, created)
}

// BindExisting binds an enterprise that already exists.
func (s *Service) BindExisting(ctx context.Context, name string) (*Enterprise, error) {
	if !strings.HasPrefix(name, "enterprises/") || strings.Count(name, "/") != 1 {
		return nil, mdmd.FieldError("name", "must be enterprises/ID")
	}
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	e, err := c.Enterprises.Get(name).Context(ctx).Do()
	if err != nil {
		return nil, amapiErr(err)
	}
	if s.cfg.PubsubTopic != "" {
		if err := s.takeNow(ctx); err != nil {
			return nil, err
		}
		e, err = c.Enterprises.Patch(name, &am.Enterprise{PubsubTopic: s.cfg.PubsubTopic, EnabledNotificationTypes: NotificationTypes}).
			UpdateMask("pubsubTopic,enabledNotificationTypes").Context(ctx).Do()
		if err != nil {
			return nil, amapiErr(err)
		}
	}
	return s.bind(ctx, e)
}

func (s *Service) bind(ctx context.Context, e *am.Enterprise) (*Enterprise, error) {
	// Binding again keeps the push secret, so the configured Pub/Sub
	// subscription keeps working.
	var sealed []byte
	if prev, err := s.GetEnterprise(ctx); err == nil && len(prev.PushSecretSealed) > 0 {
		sealed = prev.PushSecretSealed
	} else {
		b := make([]byte, 32)
		rand.Read(b)
		if sealed, err = s.box.Seal([]byte(base64.RawURLEncoding.EncodeToString(b)), pushSecretLabel); err != nil {
			return nil, err
		}
	}
	out := &Enterprise{Name: e.Name, DisplayName: e.EnterpriseDisplayName, PubsubTopic: e.PubsubTopic,
		NotificationTypes: e.EnabledNotificationTypes, PushSecretSealed: sealed}
	raw, _ := json.Marshal(out)
	if err := s.st.PutSetting(ctx, settingEnterprise, string(raw)); err != nil {
		return nil, err
	}
	s.secretMu.Lock()
	s.secretVal = ""
	s.secretMu.Unlock()
	return out, nil
}

// pushSecret returns the Pub/Sub push endpoint's secret. It is cached for
// a few seconds; a new binding replaces it on every replica within that time.
func (s *Service) pushSecret(ctx context.Context) (string, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if s.secretVal != "" && time.Since(s.secretAt) < 10*time.Second {
		return s.secretVal, nil
	}
	e, err := s.GetEnterprise(ctx)
	if err != nil {
		return "", err
	}
	v, err := s.box.Open(e.PushSecretSealed, pushSecretLabel)
	if err != nil {
		return "", err
	}
	s.secretVal, s.secretEnt, s.secretAt = string(v), e.Name, time.Now()
	return s.secretVal, nil
}

// boundEnterprise is the bound enterprise's name (cached with the secret).
func (s *Service) boundEnterprise(ctx context.Context) string {
	if _, err := s.pushSecret(ctx); err != nil {
		return ""
	}
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	return s.secretEnt
}

// PushEndpoint is the URL to configure as the Pub/Sub push subscription's
// endpoint (it holds the secret).
func (s *Service) PushEndpoint(ctx context.Context) (string, error) {
	sec, err := s.pushSecret(ctx)
	if err != nil {
		return "", err
	}
	return s.cfg.PublicURL + "/android/pubsub/" + sec, nil
}

// checkPushSecret compares a presented secret in constant time.
func (s *Service) checkPushSecret(ctx context.Context, presented string) bool {
	want, err := s.pushSecret(ctx)
	if err != nil || want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(presented), []byte(want)) == 1
}
