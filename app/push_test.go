package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/apple/fakeapns"
)

func TestPushCertificateAndRetries(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()

	// A modern (AES-encrypted) .p12, which apns2's own loader cannot read.
	topic := "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
	certPEM, keyPEM, err := fakeapns.PushCertificate(topic, 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	p12, err := pkcs12.Modern.Encode(pair.PrivateKey, leaf, nil, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	env.mustDo(400, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"p12_base64": base64.StdEncoding.EncodeToString(p12), "password": "wrong"})
	var info struct {
		Topic         string `json:"topic"`
		ExpiresInDays int    `json:"expires_in_days"`
		Warning       string `json:"warning"`
	}
	env.mustDo(200, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"p12_base64": base64.StdEncoding.EncodeToString(p12), "password": "s3cret"}).json(t, &info)
	if info.Topic != topic || info.ExpiresInDays > 10 || !strings.Contains(info.Warning, "expires in") {
		t.Fatalf("p12 upload = %+v", info)
	}
	// Not a push certificate (no com.apple.mgmt UID): refused, the stored one kept.
	c, k := selfSignedPEM(t)
	env.mustDo(400, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"cert_pem": string(c), "key_pem": string(k)})
	env.mustDo(400, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"cert_pem": string(certPEM), "key_pem": string(k)})
	env.mustDo(200, "GET", "/api/v1/apple/push-certificate", env.Token, nil).json(t, &info)
	if info.Topic != topic {
		t.Fatalf("a refused upload replaced the certificate: %+v", info)
	}
	// Go back to the environment's certificate for the devices.
	certPEM, keyPEM, _ = fakeapns.PushCertificate(env.topic, 365*24*time.Hour)
	env.mustDo(200, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)})

	url, _ := env.link(t, map[string]any{"one_time": false})
	_, dev := env.enroll(t, url, "00008110-0000000000D00001", applesim.DefaultPosture)

	// 429 and 5xx are retried with backoff; the push gets through.
	env.apns.FailNext(429, 503, 500)
	recs, err := env.srv.Pusher().Push(ctx, []string{dev.ID})
	if err != nil || len(recs) != 1 || recs[0].Result != mdmd.PushSent || recs[0].Status != http.StatusOK {
		t.Fatalf("push after transient failures = %+v, %v", recs, err)
	}
	// Past the attempts it is recorded as failed.
	env.apns.FailNext(503, 503, 503, 503)
	recs, err = env.srv.Pusher().Push(ctx, []string{dev.ID})
	if err != nil || recs[0].Result != mdmd.PushFailed || recs[0].Status != 503 {
		t.Fatalf("push after persistent failures = %+v, %v", recs, err)
	}
	// A token APNs calls malformed is rejected, not retried.
	if _, err := env.srv.Store().DB().Exec("UPDATE apple_enrollments SET push_token = 'abcd' WHERE device_id = $1", dev.ID); err != nil {
		t.Fatal(err)
	}
	recs, _ = env.srv.Pusher().Push(ctx, []string{dev.ID})
	if recs[0].Result != mdmd.PushRejected || recs[0].Reason != "BadDeviceToken" {
		t.Fatalf("bad token push = %+v", recs)
	}
	log, _ := env.srv.Store().ListPushes(ctx, dev.ID, 10)
	if len(log) < 3 {
		t.Fatalf("push outcomes recorded: %d", len(log))
	}
}

func selfSignedPEM(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	if blk, _ := pem.Decode(c); blk == nil {
		t.Fatal("no PEM")
	}
	return c, k
}
