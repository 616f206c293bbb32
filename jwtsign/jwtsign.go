// Package jwtsign signs JWTs (and Security Event Tokens) with RS256 keys
// that live in the database, sealed by the secret package, and rotate.
//
// A Keyring is one named ring of keys shared by every replica. The key of
// the highest generation whose ActiveFrom has come signs; the others stay
// in the ring's JWKS for as long as a token they signed may still be
// verified. The first key is created on first use: replicas that start at
// once each propose generation 1 and the database keeps exactly one.
// Rotation (Rotate, or RotateIfDue from a scheduled job) proposes the next
// generation the same way, so concurrent rotations create one key.
//
// Key lifetimes: a key signs for Lifetime (30 days by default) and is then
// replaced. A replaced key stays published until MaxTokenLifetime (plus the
// replicas' cache TTL) after its successor began to sign: the longest time
// a token it signed can still be valid.
//
// Caching: each Keyring reads its ring at most once per CacheTTL (and
// again at once after a rotation or prune of its own); both signing and
// the JWKS it serves use that copy, so serving the JWKS costs no query.
// The JWKS must still list every key any replica may sign with. A key
// rotated in on one replica is seen by every other one within CacheTTL,
// and an HTTP cache may keep the JWKS document for another CacheTTL (the
// handler's max-age), so the key is withheld from signing for PrePublish,
// by default 2 × CacheTTL + 30 s (the 30 s for the replicas' clocks):
// by the time any replica signs with it, every replica's JWKS, and every
// cached copy of one, lists it. A ring's first key signs at once (no
// JWKS can predate it: an empty ring is never served from the cache).
// With a PrePublish shorter than 2 × CacheTTL a verifier may meet a kid
// it cannot find yet for up to the difference.
package jwtsign

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
)

// AlgRS256 is the one signature algorithm a Keyring uses.
const AlgRS256 = "RS256"

// MinBits is the smallest RSA key a Keyring accepts.
const MinBits = 2048

// Store is what a Keyring needs from storage.
type Store interface {
	CreateSigningKey(ctx context.Context, k *mdmd.SigningKey) (*mdmd.SigningKey, bool, error)
	ListSigningKeys(ctx context.Context, ring string) ([]mdmd.SigningKey, error)
	DeleteSigningKey(ctx context.Context, ring, kid string) error
}

// Options configure a Keyring.
type Options struct {
	// Ring names the key ring (one per purpose, each with its own JWKS).
	// Default "default".
	Ring string
	// Now overrides the clock (tests).
	Now func() time.Time
	// Lifetime is how long a key signs before RotateIfDue replaces it.
	// Default 30 days.
	Lifetime time.Duration
	// MaxTokenLifetime is the longest time a signed token stays valid, and
	// so how long a replaced key stays in the JWKS after its successor
	// began to sign. Default 1 hour.
	MaxTokenLifetime time.Duration
	// PrePublish is how long a rotated-in key is published before it
	// signs. Default 2 × CacheTTL + 30 s, so that every replica's JWKS
	// and every HTTP-cached copy of it list the key before any replica
	// signs with it (see the package documentation). A negative value
	// makes a rotated-in key sign at once: for one replica whose
	// verifiers fetch the JWKS again on an unknown kid, and tests.
	PrePublish time.Duration
	// Bits is the RSA key size. Default and minimum 2048.
	Bits int
	// CacheTTL is how long the ring (the keys that sign, and the JWKS) is
	// cached before it is read again. Default 30 seconds.
	CacheTTL time.Duration
	Logger   *slog.Logger
}

// Keyring signs with the current key of a ring and publishes its JWKS.
type Keyring struct {
	st  Store
	box *secret.Box
	opt Options
	log *slog.Logger

	mu       sync.Mutex
	loadedAt time.Time
	keys     []mdmd.SigningKey          // the ring, oldest generation first; replaced, never changed in place
	public   map[string]jose.JSONWebKey // the ring's public keys by kid; replaced with keys
	parsed   map[string]*rsa.PrivateKey
	signers  map[string]jose.Signer // by kid and typ

	reload sync.Mutex // one JWKS reload at a time
}

// New returns a Keyring. It touches the database only when first used;
// call Init at startup to create the first key eagerly.
func New(st Store, box *secret.Box, opt Options) *Keyring {
	if opt.Ring == "" {
		opt.Ring = "default"
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Lifetime <= 0 {
		opt.Lifetime = 30 * 24 * time.Hour
	}
	if opt.MaxTokenLifetime <= 0 {
		opt.MaxTokenLifetime = time.Hour
	}
	if opt.Bits < MinBits {
		opt.Bits = MinBits
	}
	if opt.CacheTTL <= 0 {
		opt.CacheTTL = 30 * time.Second
	}
	switch {
	case opt.PrePublish == 0:
		opt.PrePublish = 2*opt.CacheTTL + 30*time.Second
	case opt.PrePublish < 0:
		opt.PrePublish = 0
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &Keyring{st: st, box: box, opt: opt, log: opt.Logger, parsed: map[string]*rsa.PrivateKey{}, signers: map[string]jose.Signer{}}
}

// Ring returns the ring's name.
func (k *Keyring) Ring() string { return k.opt.Ring }

// JobKind is the job kind of this ring's scheduled rotation.
func (k *Keyring) JobKind() string { return "jwtsign.rotate." + k.opt.Ring }

// Init makes sure the ring has a key, creating the first one if needed.
func (k *Keyring) Init(ctx context.Context) error {
	_, err := k.current(ctx)
	return err
}

// Sign returns claims as a JWS in compact serialization signed with the
// ring's current key, with the header parameters alg RS256, kid and typ
// (omitted when typ is empty). claims is marshalled to JSON; a
// json.RawMessage is used as it is.
func (k *Keyring) Sign(ctx context.Context, typ string, claims any) (string, error) {
	var payload []byte
	switch c := claims.(type) {
	case json.RawMessage:
		if !json.Valid(c) {
			return "", errors.New("jwtsign: claims are not JSON")
		}
		payload = c
	default:
		var err error
		if payload, err = json.Marshal(claims); err != nil {
			return "", fmt.Errorf("jwtsign: claims: %w", err)
		}
	}
	signer, err := k.signer(ctx, typ)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("jwtsign: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func (k *Keyring) signer(ctx context.Context, typ string) (jose.Signer, error) {
	key, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	id := key.KID + "\x00" + typ
	if s, ok := k.signers[id]; ok {
		return s, nil
	}
	priv, ok := k.parsed[key.KID]
	if !ok {
		raw, err := k.box.Open(key.KeySealed, sealLabel(k.opt.Ring, key.KID))
		if err != nil {
			return nil, fmt.Errorf("jwtsign: key %s: %w", key.KID, err)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("jwtsign: key %s: %w", key.KID, err)
		}
		if priv, ok = parsed.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("jwtsign: key %s is not an RSA key", key.KID)
		}
		k.parsed[key.KID] = priv
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: key.KID, Algorithm: AlgRS256}}, opts)
	if err != nil {
		return nil, fmt.Errorf("jwtsign: %w", err)
	}
	k.signers[id] = s
	return s, nil
}

// current returns the key that signs now: the highest generation whose
// ActiveFrom has come. It reads the ring when the cache is stale or holds
// no such key, and creates the first key of an empty ring.
func (k *Keyring) current(ctx context.Context) (mdmd.SigningKey, error) {
	now := k.opt.Now()
	k.mu.Lock()
	if now.Sub(k.loadedAt) < k.opt.CacheTTL {
		if key, ok := signingKey(k.keys, now); ok {
			k.mu.Unlock()
			return key, nil
		}
	}
	k.mu.Unlock()
	keys, err := k.load(ctx)
	if err != nil {
		return mdmd.SigningKey{}, err
	}
	if len(keys) == 0 {
		if _, err := k.create(ctx, 1, now); err != nil {
			return mdmd.SigningKey{}, err
		}
		if keys, err = k.load(ctx); err != nil {
			return mdmd.SigningKey{}, err
		}
	}
	key, ok := signingKey(keys, now)
	if !ok {
		// Every key is still pre-published: sign with the oldest.
		key = keys[0]
	}
	return key, nil
}

func signingKey(keys []mdmd.SigningKey, now time.Time) (mdmd.SigningKey, bool) {
	for i := len(keys) - 1; i >= 0; i-- {
		if !keys[i].ActiveFrom.After(now) {
			return keys[i], true
		}
	}
	return mdmd.SigningKey{}, false
}

// load reads the ring into the cache and returns it.
func (k *Keyring) load(ctx context.Context) ([]mdmd.SigningKey, error) {
	keys, err := k.st.ListSigningKeys(ctx, k.opt.Ring)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	public := make(map[string]jose.JSONWebKey, len(keys))
	for _, key := range keys {
		if jwk, ok := k.public[key.KID]; ok {
			public[key.KID] = jwk
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(key.PublicJWK); err != nil {
			// Left out: JWKS reports it; signing does not need it.
			k.log.Error("a stored public key does not parse", "ring", k.opt.Ring, "kid", key.KID, "err", err)
			continue
		}
		public[key.KID] = jwk
	}
	k.keys, k.public, k.loadedAt = keys, public, k.opt.Now()
	live := map[string]bool{}
	for _, key := range keys {
		live[key.KID] = true
	}
	for kid := range k.parsed {
		if !live[kid] {
			delete(k.parsed, kid)
		}
	}
	for id := range k.signers {
		if kid, _, _ := strings.Cut(id, "\x00"); !live[kid] {
			delete(k.signers, id)
		}
	}
	return keys, nil
}

// create generates a key and proposes it as the ring's generation gen,
// signing from activeFrom. It returns the stored key of that generation,
// which is another replica's when that one got there first.
func (k *Keyring) create(ctx context.Context, gen int64, activeFrom time.Time) (*mdmd.SigningKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, k.opt.Bits)
	if err != nil {
		return nil, fmt.Errorf("jwtsign: generate key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: AlgRS256, Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jwtsign: thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	pubJSON, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("jwtsign: public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("jwtsign: private key: %w", err)
	}
	sealed, err := k.box.Seal(der, sealLabel(k.opt.Ring, pub.KeyID))
	if err != nil {
		return nil, fmt.Errorf("jwtsign: seal key: %w", err)
	}
	stored, created, err := k.st.CreateSigningKey(ctx, &mdmd.SigningKey{Ring: k.opt.Ring, Generation: gen, KID: pub.KeyID,
		Alg: AlgRS256, PublicJWK: pubJSON, KeySealed: sealed, ActiveFrom: activeFrom})
	if err != nil {
		return nil, err
	}
	if created {
		k.log.Info("signing key created", "ring", k.opt.Ring, "kid", stored.KID, "generation", gen, "active_from", stored.ActiveFrom)
	}
	k.mu.Lock()
	k.loadedAt = time.Time{} // read the ring again on next use
	k.mu.Unlock()
	return stored, nil
}

func sealLabel(ring, kid string) string { return "signing-key/" + ring + "/" + kid }

// Rotate adds the ring's next key, which signs from now plus PrePublish
// on. Replicas that rotate at once create one key; each gets it.
func (k *Keyring) Rotate(ctx context.Context) (*mdmd.SigningKey, error) {
	keys, err := k.st.ListSigningKeys(ctx, k.opt.Ring)
	if err != nil {
		return nil, err
	}
	return k.rotateAfter(ctx, keys)
}

// rotateAfter proposes the generation after the newest of keys: replicas
// that read the same ring propose the same generation, and one wins.
func (k *Keyring) rotateAfter(ctx context.Context, keys []mdmd.SigningKey) (*mdmd.SigningKey, error) {
	gen := int64(1)
	if len(keys) > 0 {
		gen = keys[len(keys)-1].Generation + 1
	}
	now := k.opt.Now()
	activeFrom := now
	if gen > 1 {
		activeFrom = now.Add(k.opt.PrePublish)
	}
	return k.create(ctx, gen, activeFrom)
}

// RotateIfDue rotates when the newest key has been signing for Lifetime
// (or the ring is empty), and reports whether the ring was rotated (by
// this call, or by a replica's that proposed the same generation).
func (k *Keyring) RotateIfDue(ctx context.Context) (bool, error) {
	keys, err := k.st.ListSigningKeys(ctx, k.opt.Ring)
	if err != nil {
		return false, err
	}
	if len(keys) > 0 && k.opt.Now().Before(keys[len(keys)-1].ActiveFrom.Add(k.opt.Lifetime)) {
		return false, nil
	}
	// Propose the generation after the one checked, not after a fresh
	// read: a replica that read the ring before another's rotation
	// committed must not rotate a second time.
	_, err = k.rotateAfter(ctx, keys)
	return err == nil, err
}

// published reports whether keys[i] may still verify a token: it signs
// now or will, or its successor began signing less than MaxTokenLifetime
// (plus the cache TTL, during which a replica may still sign with it) ago.
func (k *Keyring) published(keys []mdmd.SigningKey, i int, now time.Time) bool {
	if i == len(keys)-1 {
		return true
	}
	// The first later key that has begun to sign ends this key's signing.
	for j := i + 1; j < len(keys); j++ {
		if !keys[j].ActiveFrom.After(now) {
			return now.Before(keys[j].ActiveFrom.Add(k.opt.MaxTokenLifetime + k.opt.CacheTTL))
		}
	}
	return true
}

// Prune deletes the keys that are no longer published and returns how
// many it deleted.
func (k *Keyring) Prune(ctx context.Context) (int, error) {
	keys, err := k.st.ListSigningKeys(ctx, k.opt.Ring)
	if err != nil {
		return 0, err
	}
	now, n := k.opt.Now(), 0
	for i, key := range keys {
		if k.published(keys, i, now) {
			continue
		}
		if err := k.st.DeleteSigningKey(ctx, k.opt.Ring, key.KID); err != nil {
			return n, err
		}
		n++
		k.log.Info("signing key retired", "ring", k.opt.Ring, "kid", key.KID)
	}
	if n > 0 {
		k.mu.Lock()
		k.loadedAt = time.Time{} // read the ring again on next use
		k.mu.Unlock()
	}
	return n, nil
}

// RotateJob is the handler of JobKind: it rotates when due and deletes
// retired keys. Schedule it daily; it rotates every Lifetime.
func (k *Keyring) RotateJob(ctx context.Context, _ *mdmd.Job) error {
	if _, err := k.RotateIfDue(ctx); err != nil {
		return err
	}
	_, err := k.Prune(ctx)
	return err
}

// JWKS returns the public keys whose tokens may still be valid: the
// signing key, keys rotated in but not yet signing, and replaced keys
// within MaxTokenLifetime. It reads the ring from the cache (see the
// package documentation for why that still lists every key any replica
// may sign with), reading the database at most once per CacheTTL, and
// at once after this Keyring rotated or pruned the ring.
func (k *Keyring) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	keys, public, err := k.ring(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	now := k.opt.Now()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for i, key := range keys {
		if !k.published(keys, i, now) {
			continue
		}
		jwk, ok := public[key.KID]
		if !ok {
			return jose.JSONWebKeySet{}, fmt.Errorf("jwtsign: the stored public key %s does not parse", key.KID)
		}
		set.Keys = append(set.Keys, jwk)
	}
	return set, nil
}

// cachedRing returns the cached ring while it is fresh. An empty ring is
// never fresh: its first key is about to be created.
func (k *Keyring) cachedRing() ([]mdmd.SigningKey, map[string]jose.JSONWebKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) == 0 || k.opt.Now().Sub(k.loadedAt) >= k.opt.CacheTTL {
		return nil, nil, false
	}
	return k.keys, k.public, true
}

// ring returns the ring and its public keys, from the cache while it is
// fresh; otherwise one caller reads it (creating the first key of an
// empty ring) while the others wait for that read.
func (k *Keyring) ring(ctx context.Context) ([]mdmd.SigningKey, map[string]jose.JSONWebKey, error) {
	if keys, public, ok := k.cachedRing(); ok {
		return keys, public, nil
	}
	k.reload.Lock()
	defer k.reload.Unlock()
	if keys, public, ok := k.cachedRing(); ok {
		return keys, public, nil
	}
	keys, err := k.load(ctx)
	if err == nil && len(keys) == 0 {
		if _, err = k.current(ctx); err == nil {
			keys, err = k.load(ctx)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	k.mu.Lock()
	public := k.public
	k.mu.Unlock()
	return keys, public, nil
}

// Handler serves the ring's JWKS as application/json (RFC 7517). It may
// be cached for CacheTTL (PrePublish allows for that).
func (k *Keyring) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		set, err := k.JWKS(r.Context())
		if err != nil {
			k.log.Error("serving the JWKS failed", "ring", k.opt.Ring, "err", err)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "key set unavailable", http.StatusServiceUnavailable)
			return
		}
		body, err := json.Marshal(set)
		if err != nil {
			http.Error(w, "key set unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(max(int(k.opt.CacheTTL/time.Second), 1)))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	})
}

// Verify checks a compact JWS against the ring's published keys (and its
// typ header, when typ is set) and unmarshals its payload into out. It
// checks no claims: that is the caller's business.
func (k *Keyring) Verify(ctx context.Context, token, typ string, out any) error {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return mdmd.Errorf(mdmd.EInvalid, "malformed token: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return mdmd.Errorf(mdmd.EInvalid, "the token must have one signature")
	}
	h := jws.Signatures[0].Header
	if typ != "" {
		if got, _ := h.ExtraHeaders[jose.HeaderType].(string); got != typ {
			return mdmd.Errorf(mdmd.EInvalid, "token type is %q, want %q", got, typ)
		}
	}
	set, err := k.JWKS(ctx)
	if err != nil {
		return err
	}
	keys := set.Key(h.KeyID)
	if len(keys) == 0 {
		return mdmd.Errorf(mdmd.EInvalid, "the token's key %q is unknown or retired", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return mdmd.Errorf(mdmd.EInvalid, "bad token signature")
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(payload, out); err != nil {
		return mdmd.Errorf(mdmd.EInvalid, "token payload: %v", err)
	}
	return nil
}
