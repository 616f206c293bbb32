// Package auth creates and checks mdmd's credentials: API bearer tokens
// (random secrets stored as SHA-256) and console passwords (argon2id).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/mdmd/mdmd"
)

// TokenPrefix starts every API token, so that leaked tokens are easy to
// recognise in logs and by secret scanners.
const TokenPrefix = "mdmd_"

// NewToken returns a new token secret and its SHA-256 hash. The secret has
// 256 bits of entropy, so a fast hash is safe to store.
func NewToken() (secret, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashToken(secret)
}

// HashToken returns the stored form of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// DisplayPrefix is the part of a secret that may be shown to identify it.
func DisplayPrefix(secret string) string {
	if len(secret) > len(TokenPrefix)+6 {
		return secret[:len(TokenPrefix)+6]
	}
	return secret
}

// TokenStore is what token authentication needs from storage.
type TokenStore interface {
	GetAPITokenByHash(ctx context.Context, hash string) (*mdmd.APIToken, error)
}

// AuthenticateToken resolves a bearer secret to its principal. Unknown,
// revoked and expired tokens are all EUnauthenticated, with the same
// message, so a caller learns nothing about which tokens exist.
func AuthenticateToken(ctx context.Context, st TokenStore, secret string, now time.Time) (*mdmd.Principal, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 200 {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "invalid or expired token")
	}
	tok, err := st.GetAPITokenByHash(ctx, HashToken(secret))
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "invalid or expired token")
	}
	if err != nil {
		return nil, err
	}
	if !tok.Active(now) {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "invalid or expired token")
	}
	return &mdmd.Principal{Type: mdmd.ActorToken, ID: tok.ID, Name: tok.Name, Role: tok.Role, Audience: tok.Audience,
		Person: tok.OwnerUserID}, nil
}

// argon2id parameters (RFC 9106's second recommended option, with 64 MiB).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in the PHC string format.
func HashPassword(password string) (string, error) {
	if len(password) < 12 {
		return "", mdmd.FieldError("password", "must be at least 12 characters")
	}
	if len(password) > 1024 {
		return "", mdmd.FieldError("password", "at most 1024 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches a hash from HashPassword.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem, iter uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iter, &threads); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || mem > 1<<20 || iter > 20 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, iter, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// RandomPassword returns a generated password of 24 URL-safe characters.
func RandomPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// MaxTokenDays bounds a token's lifetime: every credential expires.
const MaxTokenDays = 366

// TokenRequest describes a token to mint. Days 0 means 90.
type TokenRequest struct {
	Name     string
	Role     mdmd.Role
	Audience string
	Days     int
}

// TokenCreator stores new tokens.
type TokenCreator interface {
	CreateAPIToken(ctx context.Context, t *mdmd.APIToken) error
}

// IssueToken mints a token on behalf of p, for the API and the console
// alike. The token belongs to p's person (the signed-in user, or the owner
// of the token p used), so that two-person rules see through it. It
// returns the stored token and its secret, which is shown once.
func IssueToken(ctx context.Context, st TokenCreator, p *mdmd.Principal, req TokenRequest, now time.Time) (*mdmd.APIToken, string, error) {
	if req.Days == 0 {
		req.Days = 90
	}
	if req.Days < 1 || req.Days > MaxTokenDays {
		return nil, "", mdmd.FieldError("expires_in_days", "must be from 1 to %d", MaxTokenDays)
	}
	owner := p.Person
	if p.Type == mdmd.ActorAdmin {
		owner = p.ID
	}
	secret, hash := NewToken()
	t := &mdmd.APIToken{Name: req.Name, Role: req.Role, Audience: req.Audience, OwnerUserID: owner, Hash: hash,
		Prefix: DisplayPrefix(secret), CreatedBy: p.Name, ExpiresAt: now.Add(time.Duration(req.Days) * 24 * time.Hour)}
	if err := st.CreateAPIToken(ctx, t); err != nil {
		return nil, "", err
	}
	return t, secret, nil
}
