package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret (the Standard Webhooks format:
// the prefix, then the base64 of the key bytes).
const SecretPrefix = "whsec_"

// Header names of a signed delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock before Verify rejects it as a possible replay.
const DefaultTolerance = 5 * time.Minute

// Errors from Verify.
var (
	ErrMissingHeaders = errors.New("webhooks: webhook-id, webhook-timestamp and webhook-signature are all required")
	ErrTimestamp      = errors.New("webhooks: webhook-timestamp is missing, malformed or outside the tolerance")
	ErrSignature      = errors.New("webhooks: no signature matches")
	ErrSecret         = errors.New("webhooks: the secret is not whsec_ followed by base64")
)

// NewSecret returns a new signing secret: "whsec_" and the base64 of 32
// random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the HMAC key of a secret: the bytes its base64 after
// the whsec_ prefix decodes to.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrSecret
	}
	return key, nil
}

func mac(key []byte, msgID, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature entry of one secret for a message:
// "v1," and the base64 of HMAC-SHA256 over "{msgID}.{unix seconds}.{body}".
// Entries of several secrets are joined with spaces.
func Sign(secret, msgID string, at time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, msgID, ts, body)), nil
}

// Verify checks a webhook as its receiver should: the three headers are
// present, the timestamp is within tolerance of now (DefaultTolerance if
// tolerance is not positive), and one of the signatures is the HMAC of
// the message under the secret, compared in constant time. body must be
// the request body exactly as received.
//
// A receiver in Go:
//
//	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//	if err := webhooks.Verify(secret, r.Header, body, 0, time.Now()); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//	// Drop a message already handled: r.Header.Get("webhook-id") is the
//	// same on every retry.
func Verify(secret string, headers http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	msgID, ts, sigs := headers.Get(HeaderID), headers.Get(HeaderTimestamp), headers.Get(HeaderSignature)
	if msgID == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	want := mac(key, msgID, ts, body)
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
