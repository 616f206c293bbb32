package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd/webhooks"
)

// hmacSig is the signature computed independently of the package: the
// base64 HMAC-SHA256, keyed by the secret's decoded bytes, of
// "{id}.{timestamp}.{body}".
func hmacSig(secret, id, ts string, body []byte) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "bad secret: " + err.Error()
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// A known answer, computed with openssl rather than Go:
//
//	printf '%s' 'msg_0192abc.1795348800.{...}' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<key> -binary | base64
const (
	vectorSecret = "whsec_bWRtZC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVmISE=" // "mdmd-test-key-0123456789abcdef!!"
	vectorID     = "msg_0192abc"
	vectorTS     = 1795348800
	vectorBody   = `{"type":"threat.changed","data":{"level":"high"}}`
	vectorSig    = "v1,QdnN3hpshcoGBp2L4SpOchIKSLoknAROOk4QmaCeMXw="
)

func TestSignKnownAnswer(t *testing.T) {
	got, err := webhooks.Sign(vectorSecret, vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSig {
		t.Fatalf("Sign = %s, want %s", got, vectorSig)
	}
	if ind := hmacSig(vectorSecret, vectorID, strconv.Itoa(vectorTS), []byte(vectorBody)); ind != vectorSig {
		t.Fatalf("independent HMAC = %s, want %s", ind, vectorSig)
	}
}

func TestNewSecret(t *testing.T) {
	a, b := webhooks.NewSecret(), webhooks.NewSecret()
	if a == b || !strings.HasPrefix(a, "whsec_") {
		t.Fatalf("secrets %q and %q", a, b)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsec_"))
	if err != nil || len(key) != 32 {
		t.Fatalf("secret %q decodes to %d bytes (%v), want 32", a, len(key), err)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(vectorTS, 0)
	other := webhooks.NewSecret()
	headers := func(edit func(h http.Header)) http.Header {
		h := http.Header{}
		h.Set("webhook-id", vectorID)
		h.Set("webhook-timestamp", strconv.Itoa(vectorTS))
		h.Set("webhook-signature", vectorSig)
		if edit != nil {
			edit(h)
		}
		return h
	}
	tests := []struct {
		name   string
		secret string
		h      http.Header
		body   string
		now    time.Time
		want   error
	}{
		{"valid", vectorSecret, headers(nil), vectorBody, now, nil},
		{"secret without prefix", strings.TrimPrefix(vectorSecret, "whsec_"), headers(nil), vectorBody, now, nil},
		{"clock skew within tolerance", vectorSecret, headers(nil), vectorBody, now.Add(4 * time.Minute), nil},
		{"one of several signatures", vectorSecret, headers(func(h http.Header) {
			h.Set("webhook-signature", "v1,AAAA v2,xyz "+vectorSig)
		}), vectorBody, now, nil},
		{"tampered body", vectorSecret, headers(nil), strings.Replace(vectorBody, "high", "low", 1), now, webhooks.ErrSignature},
		{"other id", vectorSecret, headers(func(h http.Header) { h.Set("webhook-id", "msg_other") }), vectorBody, now, webhooks.ErrSignature},
		{"wrong secret", other, headers(nil), vectorBody, now, webhooks.ErrSignature},
		{"signature of another version", vectorSecret, headers(func(h http.Header) {
			h.Set("webhook-signature", "v2,"+strings.TrimPrefix(vectorSig, "v1,"))
		}), vectorBody, now, webhooks.ErrSignature},
		{"garbage signature", vectorSecret, headers(func(h http.Header) { h.Set("webhook-signature", "v1,!!!") }), vectorBody, now, webhooks.ErrSignature},
		{"too old", vectorSecret, headers(nil), vectorBody, now.Add(6 * time.Minute), webhooks.ErrTimestamp},
		{"from the future", vectorSecret, headers(nil), vectorBody, now.Add(-6 * time.Minute), webhooks.ErrTimestamp},
		{"malformed timestamp", vectorSecret, headers(func(h http.Header) { h.Set("webhook-timestamp", "soon") }), vectorBody, now, webhooks.ErrTimestamp},
		{"no id", vectorSecret, headers(func(h http.Header) { h.Del("webhook-id") }), vectorBody, now, webhooks.ErrMissingHeaders},
		{"no signature", vectorSecret, headers(func(h http.Header) { h.Del("webhook-signature") }), vectorBody, now, webhooks.ErrMissingHeaders},
		{"bad secret", "whsec_%%%", headers(nil), vectorBody, now, webhooks.ErrSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := webhooks.Verify(tc.secret, tc.h, []byte(tc.body), 5*time.Minute, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
	var total time.Duration
	for n := 1; n < webhooks.DefaultMaxAttempts; n++ {
		base := 2 * time.Hour
		if n <= len(want) {
			base = want[n-1]
		}
		for range 20 {
			d := webhooks.Backoff(n)
			if d < base*8/10 || d > base*12/10 {
				t.Fatalf("Backoff(%d) = %s, want %s ±20%%", n, d, base)
			}
		}
		total += base
	}
	// The last attempt comes about a day after the first.
	if total < 22*time.Hour || total > 26*time.Hour {
		t.Fatalf("retries span %s, want about 24h", total)
	}
}
