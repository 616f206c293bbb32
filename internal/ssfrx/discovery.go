package ssfrx

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// TransmitterConfig is the Transmitter Configuration Metadata of SSF 1.0 §7.1.
type TransmitterConfig struct {
	SpecVersion              string                `json:"spec_version,omitempty"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri,omitempty"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported,omitempty"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint,omitempty"`
	StatusEndpoint           string                `json:"status_endpoint,omitempty"`
	AddSubjectEndpoint       string                `json:"add_subject_endpoint,omitempty"`
	RemoveSubjectEndpoint    string                `json:"remove_subject_endpoint,omitempty"`
	VerificationEndpoint     string                `json:"verification_endpoint,omitempty"`
	CriticalSubjectMembers   []string              `json:"critical_subject_members,omitempty"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes,omitempty"`
	DefaultSubjects          string                `json:"default_subjects,omitempty"`
}

// AuthorizationScheme is one entry of authorization_schemes (SSF 1.0 §7.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// WellKnownURL returns the location of the Transmitter Configuration Metadata
// for issuer (SSF 1.0 §7.2): "/.well-known/ssf-configuration" inserted between
// the host and the path, after removing any terminating "/" from the path.
func WellKnownURL(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("ssfrx: issuer: %w", err)
	}
	if !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("ssfrx: issuer %q must be an absolute URL without query or fragment", issuer)
	}
	u.Path = "/.well-known/ssf-configuration" + strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// Discover fetches and validates the Transmitter Configuration Metadata and
// the transmitter's JWKS. methods lists the delivery methods the caller will
// use; each must appear in delivery_methods_supported when the transmitter
// publishes that (RECOMMENDED) member.
//
// Checks: HTTP 200 with Content-Type application/json; "issuer" identical to
// the receiver's issuer; "jwks_uri" present; every endpoint an absolute URL;
// no empty arrays (members with zero elements MUST be omitted);
// default_subjects, if present, ALL or NONE.
func (r *Receiver) Discover(ctx context.Context, methods ...string) (*TransmitterConfig, error) {
	wk, err := WellKnownURL(r.issuer)
	if err != nil {
		return nil, err
	}
	resp, body, err := r.do(ctx, http.MethodGet, wk, nil, false, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, nonConformant("discovery document Content-Type is %q, want application/json", resp.Header.Get("Content-Type"))
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		return nil, nonConformant("discovery document is not a JSON object: %s", body)
	}
	for name, v := range members {
		if strings.TrimSpace(string(v)) == "[]" {
			return nil, nonConformant("discovery member %q is an empty array; it MUST be omitted", name)
		}
	}
	var cfg TransmitterConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, nonConformant("discovery document: %v", err)
	}
	if cfg.Issuer != r.issuer {
		return nil, nonConformant("discovery issuer %q is not identical to %q", cfg.Issuer, r.issuer)
	}
	if cfg.JWKSURI == "" {
		return nil, nonConformant("discovery document has no jwks_uri")
	}
	for name, v := range map[string]string{
		"jwks_uri": cfg.JWKSURI, "configuration_endpoint": cfg.ConfigurationEndpoint,
		"status_endpoint": cfg.StatusEndpoint, "add_subject_endpoint": cfg.AddSubjectEndpoint,
		"remove_subject_endpoint": cfg.RemoveSubjectEndpoint, "verification_endpoint": cfg.VerificationEndpoint,
	} {
		if v != "" && !isHTTPURL(v) {
			return nil, nonConformant("discovery member %s=%q is not an absolute http(s) URL", name, v)
		}
	}
	if cfg.DefaultSubjects != "" && cfg.DefaultSubjects != "ALL" && cfg.DefaultSubjects != "NONE" {
		return nil, nonConformant("default_subjects is %q, want ALL or NONE", cfg.DefaultSubjects)
	}
	for _, s := range cfg.AuthorizationSchemes {
		if s.SpecURN == "" {
			return nil, nonConformant("authorization_schemes entry without spec_urn")
		}
	}
	for _, m := range methods {
		if cfg.DeliveryMethodsSupported != nil && !slices.Contains(cfg.DeliveryMethodsSupported, m) {
			return nil, nonConformant("delivery method %q not in delivery_methods_supported %v", m, cfg.DeliveryMethodsSupported)
		}
	}
	if err := r.loadJWKS(ctx, cfg.JWKSURI); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.config = &cfg
	r.mu.Unlock()
	out := cfg
	return &out, nil
}

// Config returns the discovered configuration, or nil before Discover.
func (r *Receiver) Config() *TransmitterConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.config == nil {
		return nil
	}
	c := *r.config
	return &c
}

// RefreshJWKS fetches the JWKS from the discovered jwks_uri and replaces the
// cached key set. A set containing private or symmetric key material is
// refused. Keys of a type the receiver does not understand are ignored
// (RFC 7517 §5).
func (r *Receiver) RefreshJWKS(ctx context.Context) error {
	cfg := r.Config()
	if cfg == nil {
		return fmt.Errorf("ssfrx: Discover has not been called")
	}
	return r.loadJWKS(ctx, cfg.JWKSURI)
}

func (r *Receiver) loadJWKS(ctx context.Context, uri string) error {
	r.mu.Lock()
	r.jwksFetches++
	r.mu.Unlock()
	_, body, err := r.do(ctx, http.MethodGet, uri, nil, false, http.StatusOK)
	if err != nil {
		return err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Keys == nil {
		return nonConformant("JWKS at %s is not a JSON object with a \"keys\" array", uri)
	}
	set := &jose.JSONWebKeySet{}
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			var kty struct {
				Kty string `json:"kty"`
			}
			_ = json.Unmarshal(raw, &kty)
			if kty.Kty == "RSA" || kty.Kty == "EC" || kty.Kty == "OKP" || kty.Kty == "oct" {
				return nonConformant("JWKS key is invalid: %v", err)
			}
			continue // unknown key type: ignored
		}
		if !k.IsPublic() {
			return nonConformant("JWKS key %q is not a public key (private or symmetric material published)", k.KeyID)
		}
		set.Keys = append(set.Keys, k)
	}
	r.mu.Lock()
	r.jwks = set
	r.mu.Unlock()
	return nil
}

// signingKey returns the RSA key for kid, refetching the JWKS once when kid is
// unknown (key rotation). With no kid, the JWKS must hold exactly one RSA
// signing key.
func (r *Receiver) signingKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	key, found, err := r.lookupKey(kid)
	if !found && kid != "" {
		if ferr := r.RefreshJWKS(ctx); ferr != nil {
			return nil, setErr(CodeInvalidKey, "kid %q unknown and JWKS refetch failed: %v", kid, ferr)
		}
		key, found, err = r.lookupKey(kid)
	}
	if !found {
		if kid == "" {
			return nil, setErr(CodeInvalidKey, "no kid in header and the JWKS does not hold exactly one RSA signing key")
		}
		return nil, setErr(CodeInvalidKey, "kid %q not in the transmitter's JWKS", kid)
	}
	return key, err
}

func (r *Receiver) lookupKey(kid string) (*rsa.PublicKey, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jwks == nil {
		return nil, false, nil
	}
	var cands []jose.JSONWebKey
	for _, k := range r.jwks.Keys {
		if _, ok := k.Key.(*rsa.PublicKey); !ok || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if kid == "" || k.KeyID == kid {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 || (kid == "" && len(cands) != 1) {
		return nil, false, nil
	}
	k := cands[0]
	pub := k.Key.(*rsa.PublicKey)
	if k.Algorithm != "" && k.Algorithm != string(jose.RS256) {
		return nil, true, setErr(CodeInvalidKey, "JWK %q is restricted to alg %q, SET uses RS256", k.KeyID, k.Algorithm)
	}
	if n := pub.N.BitLen(); n < 2048 {
		return nil, true, setErr(CodeInvalidKey, "RSA key %q has %d bits; at least 2048 are required", k.KeyID, n)
	}
	return pub, true, nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}
