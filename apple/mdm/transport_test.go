package mdm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
)

func testCA(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *rsa.PrivateKey) *x509.Certificate {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "device"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestTransportAndIdentity covers how a device request is allowed in: TLS,
// plain HTTP only on loopback, a trusted proxy's X-Forwarded-Proto, and the
// three ways to present the identity certificate.
func TestTransportAndIdentity(t *testing.T) {
	ca, caKey := testCA(t)
	otherCA, otherKey := testCA(t)
	good, foreign := leaf(t, ca, caKey), leaf(t, otherCA, otherKey)
	_, proxy, _ := net.ParseCIDR("10.0.0.0/8")
	s := New(nil, ca, nil, Options{TrustedProxies: []*net.IPNet{proxy}})
	header := func(c *x509.Certificate) string { return ":" + base64.StdEncoding.EncodeToString(c.Raw) + ":" }

	tests := []struct {
		name    string
		remote  string
		tlsCert *x509.Certificate
		headers map[string]string
		secure  bool
		wantErr string // "" = identified as good
	}{
		{"loopback plain HTTP, no identity", "127.0.0.1:5000", nil, nil, true, "Mdm-Signature: missing"},
		{"IPv6 loopback", "[::1]:5000", nil, nil, true, "Mdm-Signature: missing"},
		{"plain HTTP from the network", "192.0.2.10:5000", nil, nil, false, ""},
		{"untrusted proxy claiming HTTPS", "192.0.2.10:5000", nil, map[string]string{"X-Forwarded-Proto": "https"}, false, ""},
		{"trusted proxy with HTTPS", "10.1.2.3:5000", nil, map[string]string{"X-Forwarded-Proto": "https"}, true, "Mdm-Signature: missing"},
		{"mTLS with our certificate", "192.0.2.10:5000", good, nil, true, ""},
		{"mTLS with a foreign certificate", "192.0.2.10:5000", foreign, nil, true, "not issued by this server"},
		{"RFC 9440 from a trusted proxy", "10.1.2.3:5000", nil, map[string]string{"X-Forwarded-Proto": "https", "Client-Cert": header(good)}, true, ""},
		{"RFC 9440 foreign certificate", "10.1.2.3:5000", nil, map[string]string{"X-Forwarded-Proto": "https", "Client-Cert": header(foreign)}, true, "not issued by this server"},
		{"RFC 9440 from an untrusted peer is ignored", "127.0.0.1:5000", nil, map[string]string{"Client-Cert": header(good)}, true, "Mdm-Signature: missing"},
		{"RFC 9440 malformed", "10.1.2.3:5000", nil, map[string]string{"X-Forwarded-Proto": "https", "Client-Cert": ":!!:"}, true, "malformed Client-Cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/mdm/connect", strings.NewReader("x"))
			r.RemoteAddr = tc.remote
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if tc.tlsCert != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.tlsCert}}
			}
			if got := s.secureTransport(r); got != tc.secure {
				t.Fatalf("secureTransport = %v, want %v", got, tc.secure)
			}
			if !tc.secure {
				return
			}
			c, err := s.identify(r, []byte("x"))
			if tc.wantErr == "" {
				if err != nil || !c.Equal(good) {
					t.Fatalf("identify = %v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || mdmd.ErrorCode(err) != mdmd.EDeviceAuth {
				t.Fatalf("identify error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
