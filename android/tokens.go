package android

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/skip2/go-qrcode"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
)

// TokenInput is what an admin chooses for a new enrollment token.
type TokenInput struct {
	// Kind is work_profile (a personal device keeps its personal side) or
	// fully_managed (a company device, no personal use).
	Kind          string `json:"kind"`
	OwnerUser     string `json:"owner_user"`
	DurationHours int    `json:"duration_hours"`
	OneTime       *bool  `json:"one_time"`
	// Policy is an AMAPI policy ID in the enterprise (default "default").
	Policy string `json:"policy"`
}

// MaxTokenHours bounds a token's lifetime (90 days).
const MaxTokenHours = 90 * 24

// tokenData is what mdmd puts in a token's additionalData; AMAPI returns
// it in the enrolled Device as enrollmentTokenData.
type tokenData struct {
	TokenID string `json:"mdmd_token"`
}

// IssuedToken is a created token with its secret parts, shown once.
type IssuedToken struct {
	Token *mdmd.AndroidToken `json:"token"`
	Value string             `json:"value"`
	// QRCode is the provisioning JSON a device scans.
	QRCode string `json:"qr_code"`
}

// CreateToken creates an enrollment token in AMAPI and records it.
func (s *Service) CreateToken(ctx context.Context, in TokenInput, by string) (*IssuedToken, error) {
	e, err := s.GetEnterprise(ctx)
	if err != nil {
		return nil, err
	}
	usage := ""
	switch in.Kind {
	case mdmd.AndroidWorkProfile:
		usage = "PERSONAL_USAGE_ALLOWED"
	case mdmd.AndroidFullyManaged:
		usage = "PERSONAL_USAGE_DISALLOWED"
	default:
		return nil, mdmd.FieldError("kind", "must be work_profile or fully_managed, got %q", in.Kind)
	}
	if in.DurationHours == 0 {
		in.DurationHours = 24
	}
	if in.DurationHours < 1 || in.DurationHours > MaxTokenHours {
		return nil, mdmd.FieldError("duration_hours", "must be from 1 to %d", MaxTokenHours)
	}
	if len(in.OwnerUser) > 320 {
		return nil, mdmd.FieldError("owner_user", "at most 320 characters")
	}
	oneTime := true
	if in.OneTime != nil {
		oneTime = *in.OneTime
	}
	policy := in.Policy
	if policy == "" {
		policy = "default"
	}
	if !policyIDRE.MatchString(policy) {
		return nil, mdmd.FieldError("policy", "a policy ID is letters, digits, '-' and '_'")
	}
	t := &mdmd.AndroidToken{ID: newID(), Kind: in.Kind, OwnerUser: in.OwnerUser, OneTime: oneTime,
		PolicyName: e.Name + "/policies/" + policy, CreatedBy: by}
	data, _ := json.Marshal(tokenData{TokenID: t.ID})
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	created, err := c.Enterprises.EnrollmentTokens.Create(e.Name, &am.EnrollmentToken{
		AllowPersonalUsage: usage, PolicyName: t.PolicyName, OneTimeOnly: oneTime, AdditionalData: string(data),
		Duration: fmt.Sprintf("%ds", in.DurationHours*3600),
	}).Context(ctx).Do()
	if err != nil {
		return nil, amapiErr(err)
	}
	t.Name = created.Name
	if t.ExpiresAt, err = time.Parse(time.RFC3339Nano, created.ExpirationTimestamp); err != nil {
		t.ExpiresAt = time.Now().Add(time.Duration(in.DurationHours) * time.Hour)
	}
	if t.ValueSealed, err = s.box.Seal([]byte(created.Value), "android-token:"+t.ID); err != nil {
		return nil, err
	}
	if t.QRSealed, err = s.box.Seal([]byte(created.QrCode), "android-qr:"+t.ID); err != nil {
		return nil, err
	}
	if err := s.st.CreateAndroidToken(ctx, t); err != nil {
		return nil, err
	}
	return &IssuedToken{Token: t, Value: created.Value, QRCode: created.QrCode}, nil
}

// QRPNG renders a token's QR code as a PNG.
func (s *Service) QRPNG(ctx context.Context, id string) ([]byte, error) {
	t, err := s.st.GetAndroidToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.RevokedAt != nil || time.Now().After(t.ExpiresAt) {
		return nil, mdmd.Errorf(mdmd.EConflict, "the token is revoked or expired")
	}
	qr, err := s.box.Open(t.QRSealed, "android-qr:"+t.ID)
	if err != nil {
		return nil, err
	}
	return qrcode.Encode(string(qr), qrcode.Medium, 512)
}

// RevokeToken deletes a token in AMAPI (no more enrollments with it) and
// marks it revoked.
func (s *Service) RevokeToken(ctx context.Context, id string) (*mdmd.AndroidToken, error) {
	t, err := s.st.GetAndroidToken(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.takeNow(ctx); err != nil {
		return nil, err
	}
	if _, err := c.Enterprises.EnrollmentTokens.Delete(t.Name).Context(ctx).Do(); err != nil && !mdmd.IsCode(amapiErr(err), mdmd.ENotFound) {
		return nil, amapiErr(err)
	}
	return s.st.RevokeAndroidToken(ctx, id)
}
