// Package enroll brings devices under management: enrollment links that
// admins hand out, the signed Apple enrollment profile each link serves
// with a fresh one-time SCEP challenge, and the SCEP server that issues
// device identity certificates from mdmd's CA.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/pki"
	"github.com/mdmd/mdmd/profiles"
	"github.com/mdmd/mdmd/web"
)

// Store is what enrollment needs from storage.
type Store interface {
	CreateEnrollmentLink(ctx context.Context, l *mdmd.EnrollmentLink) error
	GetEnrollmentLink(ctx context.Context, id string) (*mdmd.EnrollmentLink, error)
	GetEnrollmentLinkByTokenHash(ctx context.Context, hash string) (*mdmd.EnrollmentLink, error)
	ListEnrollmentLinks(ctx context.Context, platform mdmd.Platform) ([]mdmd.EnrollmentLink, error)
	RevokeEnrollmentLink(ctx context.Context, id string) (*mdmd.EnrollmentLink, error)
	CreateSCEPChallenge(ctx context.Context, linkID, hash string, expires time.Time) error
	IssueDeviceCert(ctx context.Context, challengeHash string, c *mdmd.DeviceCert) error
	RecordDeviceCert(ctx context.Context, c *mdmd.DeviceCert) error
	RenewalTarget(ctx context.Context, fingerprint string) (string, error)
}

// TopicSource returns the APNs topic of the uploaded push certificate.
type TopicSource interface {
	Topic(ctx context.Context) (string, error)
}

// Config configures enrollment.
type Config struct {
	// PublicURL is where devices reach mdmd (no trailing slash).
	PublicURL    string
	Organization string
	// ChallengeTTL is how long a downloaded profile's challenge stays valid.
	ChallengeTTL time.Duration
	// CertValidity is the lifetime of device identity certificates.
	CertValidity time.Duration
}

// Service runs enrollment.
type Service struct {
	st     Store
	ids    *pki.Identities
	topics TopicSource
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
}

// New returns the enrollment service.
func New(st Store, ids *pki.Identities, topics TopicSource, cfg Config, log *slog.Logger) *Service {
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = time.Hour
	}
	if cfg.CertValidity <= 0 {
		cfg.CertValidity = 365 * 24 * time.Hour
	}
	return &Service{st: st, ids: ids, topics: topics, cfg: cfg, log: log, now: time.Now}
}

// Paths of the device-facing endpoints.
const (
	PathSCEP       = "/scep"
	PathMDMCheckin = "/mdm/checkin"
	PathMDMConnect = "/mdm/connect"
)

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// LinkInput is what an admin chooses for a new link.
type LinkInput struct {
	Platform       mdmd.Platform  `json:"platform"`
	OneTime        *bool          `json:"one_time"`
	ExpiresInHours int            `json:"expires_in_hours"`
	Ownership      mdmd.Ownership `json:"ownership"`
	OwnerUser      string         `json:"owner_user"`
}

// MaxLinkHours bounds a link's lifetime (90 days).
const MaxLinkHours = 90 * 24

// CreateLink makes a link and returns it with its URL, which holds the
// only copy of its secret.
func (s *Service) CreateLink(ctx context.Context, in LinkInput, by string) (*mdmd.EnrollmentLink, string, error) {
	if in.Platform == "" {
		in.Platform = mdmd.PlatformIOS
	}
	if in.Platform != mdmd.PlatformIOS {
		return nil, "", mdmd.FieldError("platform", "links are for ios; Android devices enroll with an AMAPI enrollment token")
	}
	if in.ExpiresInHours == 0 {
		in.ExpiresInHours = 72
	}
	if in.ExpiresInHours < 1 || in.ExpiresInHours > MaxLinkHours {
		return nil, "", mdmd.FieldError("expires_in_hours", "must be from 1 to %d", MaxLinkHours)
	}
	if in.Ownership == "" {
		in.Ownership = mdmd.OwnershipCorporate
	}
	oneTime := true
	if in.OneTime != nil {
		oneTime = *in.OneTime
	}
	secret := randomSecret()
	l := &mdmd.EnrollmentLink{TokenHash: hashSecret(secret), Platform: in.Platform, OneTime: oneTime, Ownership: in.Ownership,
		OwnerUser: in.OwnerUser, CreatedBy: by, ExpiresAt: s.now().Add(time.Duration(in.ExpiresInHours) * time.Hour)}
	if err := s.st.CreateEnrollmentLink(ctx, l); err != nil {
		return nil, "", err
	}
	return l, s.cfg.PublicURL + "/enroll/" + secret, nil
}

// Profile returns the unsigned enrollment profile of a link, with a new
// one-time SCEP challenge.
func (s *Service) Profile(ctx context.Context, l *mdmd.EnrollmentLink) ([]byte, error) {
	if !l.Usable(s.now()) {
		return nil, mdmd.Errorf(mdmd.EForbidden, "this enrollment link is expired, revoked or already used")
	}
	topic, err := s.topics.Topic(ctx)
	if err != nil {
		return nil, err
	}
	challenge := randomSecret()
	if err := s.st.CreateSCEPChallenge(ctx, l.ID, hashSecret(challenge), s.now().Add(s.cfg.ChallengeTTL)); err != nil {
		return nil, err
	}
	return profiles.BuildEnrollment(profiles.Enrollment{
		Organization: s.cfg.Organization, SCEPURL: s.cfg.PublicURL + PathSCEP,
		ServerURL: s.cfg.PublicURL + PathMDMConnect, CheckInURL: s.cfg.PublicURL + PathMDMCheckin,
		Challenge: challenge, Topic: topic, Subject: "mdmd device " + l.ID,
	})
}

// SignedProfile signs a profile as CMS SignedData with the profile signer.
func (s *Service) SignedProfile(ctx context.Context, l *mdmd.EnrollmentLink) ([]byte, error) {
	xml, err := s.Profile(ctx, l)
	if err != nil {
		return nil, err
	}
	return apple.Sign(xml, s.ids.ProfileSigner.Cert, s.ids.ProfileSigner.Key, s.ids.CA.Cert)
}

// ServeEnroll answers GET /enroll/{token} with the signed profile. An
// unknown, expired, used or revoked link is 404 with a plain message, the
// same for all, so links cannot be probed.
func (s *Service) ServeEnroll(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	fail := func(err error) {
		s.log.Info("enrollment profile refused", "err", err, "request_id", web.RequestID(r.Context()))
		http.Error(w, "This enrollment link is not valid. Ask your administrator for a new one.", http.StatusNotFound)
	}
	if len(token) < 20 || len(token) > 100 {
		fail(mdmd.Errorf(mdmd.ENotFound, "malformed token"))
		return
	}
	l, err := s.st.GetEnrollmentLinkByTokenHash(r.Context(), hashSecret(token))
	if err != nil {
		fail(err)
		return
	}
	signed, err := s.SignedProfile(r.Context(), l)
	if mdmd.IsCode(err, mdmd.EForbidden) {
		fail(err)
		return
	}
	if err != nil {
		web.WriteError(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="enroll.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(signed)
}

// RegisterAPI adds the admin routes for enrollment links.
func (s *Service) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/enrollment-links", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		var in LinkInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		l, url, err := s.CreateLink(r.Context(), in, web.PrincipalFrom(r.Context()).Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "enrollment_link.create", "enrollment_link", l.ID, mdmd.OutcomeSuccess, "", map[string]any{
			"one_time": l.OneTime, "ownership": l.Ownership, "owner_user": l.OwnerUser, "expires_at": l.ExpiresAt})
		web.WriteJSON(w, http.StatusCreated, struct {
			Link *mdmd.EnrollmentLink `json:"link"`
			URL  string               `json:"url"`
		}{l, url})
		return nil
	})
	reg.Handle("GET", "/enrollment-links", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		ls, err := s.st.ListEnrollmentLinks(r.Context(), mdmd.Platform(r.URL.Query().Get("platform")))
		if err != nil {
			return err
		}
		if ls == nil {
			ls = []mdmd.EnrollmentLink{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": ls})
		return nil
	})
	reg.Handle("DELETE", "/enrollment-links/{id}", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		l, err := s.st.RevokeEnrollmentLink(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		reg.Audit(r, "enrollment_link.revoke", "enrollment_link", l.ID, mdmd.OutcomeSuccess, "", nil)
		web.WriteJSON(w, http.StatusOK, l)
		return nil
	})
	// The unsigned XML of a link's profile, for tooling; like every
	// download it carries a fresh one-time challenge.
	reg.Handle("GET", "/enrollment-links/{id}/profile", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		l, err := s.st.GetEnrollmentLink(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		xml, err := s.Profile(r.Context(), l)
		if err != nil {
			return err
		}
		reg.Audit(r, "enrollment_link.profile", "enrollment_link", l.ID, mdmd.OutcomeSuccess, "unsigned profile downloaded", nil)
		w.Header().Set("Content-Type", "application/x-plist")
		w.Write(xml)
		return nil
	})
}
