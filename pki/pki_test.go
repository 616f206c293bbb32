package pki_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/mdmd/mdmd/pki"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.SQLiteURL(t), storage.Options{})
	box, _ := secret.New(bytes.Repeat([]byte{1}, 32))
	ids, created, err := pki.Bootstrap(ctx, st, box, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 2 {
		t.Fatalf("created = %v", created)
	}
	ca := ids.CA.Cert
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || !strings.Contains(ca.Subject.CommonName, "Acme") {
		t.Fatalf("CA certificate = %+v", ca.Subject)
	}
	if k, ok := ids.CA.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() < 2048 {
		t.Fatal("the CA key must be RSA of at least 2048 bits (SCEP encrypts to it)")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := ids.ProfileSigner.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Fatalf("profile signer does not chain to the CA: %v", err)
	}

	// Loading again returns the same identities and creates nothing.
	again, created, err := pki.Bootstrap(ctx, st, box, "Acme")
	if err != nil || len(created) != 0 || again.CA.Fingerprint() != ids.CA.Fingerprint() ||
		again.ProfileSigner.Fingerprint() != ids.ProfileSigner.Fingerprint() {
		t.Fatalf("reload: created %v, err %v", created, err)
	}
	// The wrong key opens nothing.
	wrong, _ := secret.New(bytes.Repeat([]byte{2}, 32))
	if _, _, err := pki.Bootstrap(ctx, st, wrong, "Acme"); err == nil {
		t.Fatal("bootstrap with the wrong secret key succeeded")
	}
	// The stored key is sealed: its DER is not in the row.
	kp, _ := st.GetKeypair(ctx, pki.NameCA)
	der, _ := x509.MarshalPKCS8PrivateKey(ids.CA.Key)
	if bytes.Contains(kp.KeySealed, der[len(der)-32:]) {
		t.Fatal("stored key is not sealed")
	}
}
