package jwtsign_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/jwtsign"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

var ctx = context.Background()

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func box(t *testing.T, b byte) *secret.Box {
	bx, err := secret.New(bytes.Repeat([]byte{b}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return bx
}

// verify checks a token the way a relying party would: with go-jose and
// the published key set only.
func verify(t *testing.T, set jose.JSONWebKeySet, token string) (kid, typ string, claims map[string]any) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is in the JWKS %d times", h.KeyID, len(keys))
	}
	if pub, ok := keys[0].Key.(*rsa.PublicKey); !ok || pub.N.BitLen() < 2048 {
		t.Fatalf("published key %T is not RSA of 2048 bits or more", keys[0].Key)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	return h.KeyID, typ, claims
}

func TestKeyring(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
			st := storagetest.Open(t, be.URL, storage.Options{Now: clk.Now})
			opts := jwtsign.Options{Ring: "test", Now: clk.Now, MaxTokenLifetime: time.Hour, CacheTTL: time.Minute}

			// Replicas starting at once create exactly one key.
			rings := make([]*jwtsign.Keyring, 4)
			var wg sync.WaitGroup
			for i := range rings {
				rings[i] = jwtsign.New(st, box(t, 1), opts)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := rings[i].Init(ctx); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			keys, err := st.ListSigningKeys(ctx, "test")
			if err != nil || len(keys) != 1 {
				t.Fatalf("bootstrap left %d keys (%v), want 1", len(keys), err)
			}
			if bytes.Contains(keys[0].KeySealed, []byte("PRIVATE")) || !secret.IsSealed(keys[0].KeySealed) {
				t.Fatal("the private key is not sealed at rest")
			}
			a, b := rings[0], rings[1]

			token, err := a.Sign(ctx, "device-compliance+jwt", map[string]any{"sub": "d1", "exp": clk.Now().Add(time.Hour).Unix()})
			if err != nil {
				t.Fatal(err)
			}
			set, err := b.JWKS(ctx)
			if err != nil {
				t.Fatal(err)
			}
			kid1, typ, claims := verify(t, set, token)
			if typ != "device-compliance+jwt" || claims["sub"] != "d1" || kid1 != keys[0].KID {
				t.Fatalf("token: kid %s typ %s claims %v", kid1, typ, claims)
			}
			var got map[string]any
			if err := b.Verify(ctx, token, "device-compliance+jwt", &got); err != nil || got["sub"] != "d1" {
				t.Fatalf("Verify = %v, %v", got, err)
			}
			if err := b.Verify(ctx, token, "secevent+jwt", nil); err == nil {
				t.Fatal("a token of another type verified")
			}
			raw, err := a.Sign(ctx, "secevent+jwt", json.RawMessage(`{"jti":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			if _, typ, claims := verify(t, set, raw); typ != "secevent+jwt" || claims["jti"] != "x" {
				t.Fatalf("raw claims: %s %v", typ, claims)
			}
			// A box with another key cannot use the stored key.
			if _, err := jwtsign.New(st, box(t, 2), opts).Sign(ctx, "", map[string]any{}); err == nil {
				t.Fatal("signed with a key sealed under another secret")
			}

			// Not due yet; then due, rotated once however many replicas try.
			if rotated, err := a.RotateIfDue(ctx); err != nil || rotated {
				t.Fatalf("RotateIfDue on a fresh key = %v, %v", rotated, err)
			}
			clk.Add(31 * 24 * time.Hour)
			var mu sync.Mutex
			n := 0
			for _, r := range rings {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rotated, err := r.RotateIfDue(ctx)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					defer mu.Unlock()
					if rotated {
						n++
					}
				}()
			}
			wg.Wait()
			keys, _ = st.ListSigningKeys(ctx, "test")
			if len(keys) != 2 || keys[1].Generation != 2 {
				t.Fatalf("after rotation: %d keys", len(keys))
			}
			// The new key is published at once: b's cache is stale, so its
			// JWKS reads the ring again and has the new key.
			set, err = b.JWKS(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 2 {
				t.Fatalf("JWKS after rotation has %d keys, want the old and the new", len(set.Keys))
			}
			// It signs once pre-published for 2 × CacheTTL + 30 s.
			clk.Add(3 * time.Minute)
			token2, err := a.Sign(ctx, "", map[string]string{"n": "2"})
			if err != nil {
				t.Fatal(err)
			}
			if kid, _, _ := verify(t, set, token2); kid != keys[1].KID {
				t.Fatalf("signed with %s, want the new key %s", kid, keys[1].KID)
			}
			// The old key still verifies what it signed within the token
			// lifetime, then leaves the JWKS and is pruned.
			verify(t, set, token)
			clk.Add(2 * time.Hour)
			set, _ = a.JWKS(ctx)
			if len(set.Keys) != 1 || set.Keys[0].KeyID != keys[1].KID {
				t.Fatalf("JWKS after the old key's tokens expired = %d keys", len(set.Keys))
			}
			if pruned, err := a.Prune(ctx); err != nil || pruned != 1 {
				t.Fatalf("Prune = %d, %v", pruned, err)
			}

			// A pre-published key is in the JWKS before it signs.
			pre := jwtsign.New(st, box(t, 1), jwtsign.Options{Ring: "test", Now: clk.Now, PrePublish: 10 * time.Minute, CacheTTL: time.Second})
			k3, err := pre.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			set, _ = pre.JWKS(ctx)
			if len(set.Key(k3.KID)) != 1 {
				t.Fatal("a pre-published key is missing from the JWKS")
			}
			tok, _ := pre.Sign(ctx, "", map[string]string{})
			if kid, _, _ := verify(t, set, tok); kid != keys[1].KID {
				t.Fatalf("a pre-published key signs early (%s)", kid)
			}
			clk.Add(11 * time.Minute)
			tok, _ = pre.Sign(ctx, "", map[string]string{})
			if kid, _, _ := verify(t, set, tok); kid != k3.KID {
				t.Fatalf("the pre-published key does not sign once active (%s)", kid)
			}

			// The JWKS handler.
			rec := httptest.NewRecorder()
			pre.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/jwks.json", nil))
			var doc struct {
				Keys []map[string]any `json:"keys"`
			}
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &doc) != nil || len(doc.Keys) == 0 {
				t.Fatalf("handler: %d %s", rec.Code, rec.Body)
			}
			for _, k := range doc.Keys {
				if _, private := k["d"]; private || k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" {
					t.Fatalf("published key %v", k)
				}
			}
		})
	}
}

// BenchmarkSign measures RS256 signing of a SET-sized payload with a
// cached key, in parallel on every core.
func BenchmarkSign(b *testing.B) {
	st := storagetest.Open(b, storagetest.SQLiteURL(b), storage.Options{})
	bx, _ := secret.New(bytes.Repeat([]byte{1}, secret.KeySize))
	k := jwtsign.New(st, bx, jwtsign.Options{Ring: "bench"})
	claims := json.RawMessage(`{"iss":"https://mdmd.example.com","aud":"rx","iat":1700000000,"jti":"0123456789abcdef0123456789abcdef",` +
		`"sub_id":{"format":"opaque","id":"device"},"events":{"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":` +
		`{"previous_status":"compliant","current_status":"not-compliant","event_timestamp":1700000000}}}`)
	if _, err := k.Sign(ctx, "secevent+jwt", claims); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Sign(ctx, "secevent+jwt", claims); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// countingStore counts the reads of the ring.
type countingStore struct {
	jwtsign.Store
	mu    sync.Mutex
	lists int
}

func (c *countingStore) ListSigningKeys(ctx context.Context, ring string) ([]mdmd.SigningKey, error) {
	c.mu.Lock()
	c.lists++
	c.mu.Unlock()
	return c.Store.ListSigningKeys(ctx, ring)
}

func (c *countingStore) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists
}

func serveJWKS(t *testing.T, k *jwtsign.Keyring) (jose.JSONWebKeySet, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	k.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/jwks.json", nil))
	var set jose.JSONWebKeySet
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &set) != nil {
		t.Fatalf("JWKS: %d %s", rec.Code, rec.Body)
	}
	return set, rec
}

// The public JWKS is served from the key ring's cache: no query per
// request, a read once the cache is CacheTTL old, and one at once after a
// rotation of this replica's.
func TestJWKSCache(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
			st := &countingStore{Store: storagetest.Open(t, be.URL, storage.Options{Now: clk.Now})}
			k := jwtsign.New(st, box(t, 1), jwtsign.Options{Ring: "cache", Now: clk.Now, CacheTTL: 30 * time.Second})
			if err := k.Init(ctx); err != nil {
				t.Fatal(err)
			}
			reads := st.reads()
			for range 50 {
				if set, _ := serveJWKS(t, k); len(set.Keys) != 1 {
					t.Fatalf("JWKS has %d keys", len(set.Keys))
				}
				clk.Add(100 * time.Millisecond)
			}
			if n := st.reads() - reads; n != 0 {
				t.Fatalf("50 JWKS requests within the cache TTL read the ring %d times, want 0", n)
			}
			_, rec := serveJWKS(t, k)
			if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=30" {
				t.Fatalf("Cache-Control = %q, want the cache TTL", cc)
			}
			clk.Add(30 * time.Second)
			for range 10 {
				serveJWKS(t, k)
			}
			if n := st.reads() - reads; n != 1 {
				t.Fatalf("after the TTL, 10 requests read the ring %d times, want 1", n)
			}
			// A rotation here is published at once, cache or not.
			k2, err := k.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if set, _ := serveJWKS(t, k); len(set.Keys) != 2 || len(set.Key(k2.KID)) != 1 {
				t.Fatalf("JWKS after a local rotation has %d keys, want the new one too", len(set.Keys))
			}
		})
	}
}

// A key rotated in on one replica is in every replica's JWKS, and in
// every copy an HTTP cache may hold for max-age, before any replica signs
// with it: replicas cache the ring for CacheTTL, and the default
// PrePublish outlasts both caches.
func TestRotationAcrossReplicas(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
			st := storagetest.Open(t, be.URL, storage.Options{Now: clk.Now})
			const ttl = 30 * time.Second
			replicas := make([]*jwtsign.Keyring, 3)
			for i := range replicas {
				replicas[i] = jwtsign.New(st, box(t, 1), jwtsign.Options{Ring: "spread", Now: clk.Now, CacheTTL: ttl})
				if err := replicas[i].Init(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// What a verifier of each replica holds: the JWKS document as
			// an HTTP cache keeps it, for max-age.
			type copyOf struct {
				set jose.JSONWebKeySet
				at  time.Time
			}
			held := make([]copyOf, len(replicas))
			fetch := func() {
				for i, r := range replicas {
					if held[i].set.Keys == nil || clk.Now().Sub(held[i].at) >= ttl {
						set, _ := serveJWKS(t, r)
						held[i] = copyOf{set, clk.Now()}
					}
				}
			}
			fetch()
			clk.Add(7 * time.Second)
			fetch()
			rotatedAt := clk.Now()
			newKey, err := replicas[0].Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			signedNew := 0
			for step := 0; step < 60; step++ { // 3 minutes in 3 s steps
				clk.Add(3 * time.Second)
				fetch()
				for i, r := range replicas {
					tok, err := r.Sign(ctx, "", map[string]int{"step": step})
					if err != nil {
						t.Fatal(err)
					}
					jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
					if err != nil {
						t.Fatal(err)
					}
					kid := jws.Signatures[0].Header.KeyID
					if kid == newKey.KID {
						signedNew++
					}
					for j := range held {
						if len(held[j].set.Key(kid)) != 1 {
							t.Fatalf("%s after the rotation replica %d signed with %s, which replica %d's JWKS (fetched %s after it) lacks",
								clk.Now().Sub(rotatedAt), i, kid, j, held[j].at.Sub(rotatedAt))
						}
					}
				}
			}
			if signedNew == 0 {
				t.Fatal("the rotated-in key never signed")
			}
		})
	}
}
