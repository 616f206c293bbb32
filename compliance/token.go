package compliance

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// TokenType is the JWT typ header of a device compliance token.
const TokenType = "device-compliance+jwt"

// JWKSPath serves the public keys that verify compliance tokens, and
// DeviceTokenPath the devices' own token requests.
const (
	JWKSPath        = "/compliance/jwks.json"
	DeviceTokenPath = "/mdm/compliance-token"
)

// MaxTokenLifetime is the longest a compliance token is valid.
const MaxTokenLifetime = time.Hour

// Signer signs JWTs with keys published in a JWKS.
type Signer interface {
	Sign(ctx context.Context, typ string, claims any) (string, error)
}

// TokenStore is what token issuance needs from storage.
type TokenStore interface {
	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	GetAppleEnrollment(ctx context.Context, deviceID string) (*mdmd.AppleEnrollment, error)
	GetCompliancePolicy(ctx context.Context, id string) (*mdmd.CompliancePolicy, error)
	AudienceApproved(ctx context.Context, audience string) (bool, error)
}

// DeviceAuthenticator authenticates a request made with a device's
// identity certificate (the Apple MDM service).
type DeviceAuthenticator interface {
	AuthenticateDevice(r *http.Request, contentType string) ([]byte, *x509.Certificate, *mdmd.AppleEnrollment, error)
}

// Tokens issues offline-verifiable compliance tokens: short-lived JWTs,
// signed with a key in mdmd's compliance JWKS, that say what mdmd knows of
// a device's compliance. A relying party verifies them without calling
// mdmd, and binds them to the device by the cnf thumbprint of the
// device's identity certificate (RFC 8705's x5t#S256).
type Tokens struct {
	Service *Service
	Store   TokenStore
	Keys    Signer
	// Issuer is mdmd's external URL, the tokens' iss.
	Issuer string
	// Lifetime of a token, at most (and by default) MaxTokenLifetime.
	Lifetime time.Duration
	Now      func() time.Time
}

// TokenClaims are a compliance token's claims.
type TokenClaims struct {
	Issuer     string           `json:"iss"`
	Subject    string           `json:"sub"` // the device ID
	Audience   string           `json:"aud"`
	IssuedAt   int64            `json:"iat"`
	NotBefore  int64            `json:"nbf"`
	Expiry     int64            `json:"exp"`
	ID         string           `json:"jti"`
	Compliance TokenCompliance  `json:"compliance"`
	Device     mdmd.EventDevice `json:"device"`
	// Confirmation holds x5t#S256, the base64url SHA-256 of the DER of
	// the device's identity certificate (Apple devices; Android devices
	// have no mdmd-issued identity).
	Confirmation map[string]string `json:"cnf,omitempty"`
}

// TokenCompliance is the compliance part of a token.
type TokenCompliance struct {
	State         State    `json:"state"`
	PolicyID      string   `json:"policy_id,omitempty"`
	PolicyName    string   `json:"policy_name,omitempty"`
	PolicyVersion int      `json:"policy_version,omitempty"`
	EvaluatedAt   int64    `json:"evaluated_at"`
	FailedRules   []string `json:"failed_rules"`
	Reason        string   `json:"reason"`
}

// Issue evaluates the device now and returns a signed token for the
// audience. certDER, if given, is the identity certificate the device
// presented; otherwise the device's current identity is used.
func (t *Tokens) Issue(ctx context.Context, deviceID, audience string, certDER []byte) (string, *TokenClaims, error) {
	if audience == "" || len(audience) > 200 {
		return "", nil, mdmd.FieldError("audience", "must be 1 to 200 characters")
	}
	res, err := t.Service.EvaluateDevice(ctx, deviceID, "token")
	if err != nil {
		return "", nil, err
	}
	d, err := t.Store.GetDevice(ctx, deviceID)
	if err != nil {
		return "", nil, err
	}
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	life := t.Lifetime
	if life <= 0 || life > MaxTokenLifetime {
		life = MaxTokenLifetime
	}
	exp := now.Add(life)
	c := &TokenClaims{Issuer: t.Issuer, Subject: deviceID, Audience: audience, IssuedAt: now.Unix(), NotBefore: now.Unix(),
		ID: randomID(), Device: mdmd.NewEventDevice(d),
		Compliance: TokenCompliance{State: res.State, PolicyID: res.PolicyID, EvaluatedAt: res.EvaluatedAt.Unix(),
			FailedRules: res.Failed(), Reason: res.Reason}}
	if c.Compliance.FailedRules == nil {
		c.Compliance.FailedRules = []string{}
	}
	if res.PolicyID != "" {
		if p, err := t.Store.GetCompliancePolicy(ctx, res.PolicyID); err == nil {
			c.Compliance.PolicyName, c.Compliance.PolicyVersion = p.Name, p.Version
			// Never past the check-in validity window: a device that
			// goes silent stops being vouched for when its window ends.
			var rules Policy
			if json.Unmarshal(p.Rules, &rules) == nil && rules.CheckInValidityDays > 0 && d.LastSeenAt != nil {
				if end := d.LastSeenAt.Add(time.Duration(rules.CheckInValidityDays) * day); end.Before(exp) {
					exp = end
				}
			}
		}
	}
	if !exp.After(now) {
		exp = now // a device past its window gets a token that is already expired
	}
	c.Expiry = exp.Unix()
	switch {
	case certDER != nil:
		c.Confirmation = map[string]string{"x5t#S256": thumbprint(certDER)}
	case d.Platform == mdmd.PlatformIOS:
		enr, err := t.Store.GetAppleEnrollment(ctx, deviceID)
		if err != nil {
			return "", nil, err
		}
		fp, err := hex.DecodeString(enr.CertFingerprint)
		if err != nil || len(fp) != sha256.Size {
			return "", nil, mdmd.Errorf(mdmd.EInternal, "device %s has a malformed identity fingerprint", deviceID)
		}
		c.Confirmation = map[string]string{"x5t#S256": base64.RawURLEncoding.EncodeToString(fp)}
	}
	tok, err := t.Keys.Sign(ctx, TokenType, c)
	if err != nil {
		return "", nil, err
	}
	return tok, c, nil
}

func thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

type tokenResponse struct {
	Token     string       `json:"token"`
	TokenType string       `json:"token_type"`
	ExpiresAt int64        `json:"expires_at"`
	Claims    *TokenClaims `json:"claims"`
}

// RegisterAPI adds the relying parties' route: a token for a device,
// for the audience the caller's own API token names.
func (t *Tokens) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/compliance/token", mdmd.PermComplianceToken, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			DeviceID string `json:"device_id"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		p := web.PrincipalFrom(r.Context())
		if p == nil || p.Audience == "" {
			return mdmd.Errorf(mdmd.EForbidden, "only a relying party's token, which names its audience, gets compliance tokens")
		}
		tok, c, err := t.Issue(r.Context(), in.DeviceID, p.Audience, nil)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, tokenResponse{Token: tok, TokenType: TokenType, ExpiresAt: c.Expiry, Claims: c})
		return nil
	})
}

// DeviceHandler serves devices asking for a token about themselves with
// their identity certificate (TLS client authentication, or an
// Mdm-Signature over the JSON body {"audience": ...}). Only audiences of
// relying parties an admin approved are served.
func (t *Tokens) DeviceHandler(auth DeviceAuthenticator, log func(w http.ResponseWriter, r *http.Request, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := t.serveDevice(w, r, auth); err != nil {
			log(w, r, err)
		}
	}
}

func (t *Tokens) serveDevice(w http.ResponseWriter, r *http.Request, auth DeviceAuthenticator) error {
	body, cert, enr, err := auth.AuthenticateDevice(r, "application/json")
	if err != nil {
		return err
	}
	var in struct {
		Audience string `json:"audience"`
	}
	if err := web.DecodeJSONBytes(body, &in); err != nil {
		return err
	}
	ok, err := t.Store.AudienceApproved(r.Context(), in.Audience)
	if err != nil {
		return err
	}
	if !ok {
		return mdmd.Errorf(mdmd.EForbidden, "no approved relying party has the audience %q", in.Audience)
	}
	tok, c, err := t.Issue(r.Context(), enr.DeviceID, in.Audience, cert.Raw)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, tokenResponse{Token: tok, TokenType: TokenType, ExpiresAt: c.Expiry, Claims: c})
	return nil
}
