// Package pki creates and keeps mdmd's own identities: the certificate
// authority that issues device identities and the identity that signs
// enrollment profiles. They are generated on first start, stored with the
// private key sealed by the server's secret key, and reused ever after,
// also by every other replica.
package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/secret"
)

// Names of the stored key pairs.
const (
	NameCA            = "device-ca"
	NameProfileSigner = "profile-signer"
)

// KeypairStore is what pki needs from storage.
type KeypairStore interface {
	CreateKeypairIfAbsent(ctx context.Context, kp *mdmd.Keypair) (*mdmd.Keypair, bool, error)
	GetKeypair(ctx context.Context, name string) (*mdmd.Keypair, error)
}

// Identity is a certificate with its private key.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Fingerprint is the certificate's SHA-256, hex encoded.
func (id *Identity) Fingerprint() string {
	sum := sha256.Sum256(id.Cert.Raw)
	return fmt.Sprintf("%x", sum)
}

// Identities are the server's own key pairs.
type Identities struct {
	CA            *Identity
	ProfileSigner *Identity
}

// Bootstrap loads the server's identities, creating any that do not exist
// yet. created lists the names it created.
func Bootstrap(ctx context.Context, st KeypairStore, box *secret.Box, org string) (ids *Identities, created []string, err error) {
	ca, made, err := loadOrCreate(ctx, st, box, NameCA, func() (*x509.Certificate, crypto.Signer, error) {
		return newCA(org)
	})
	if err != nil {
		return nil, nil, err
	}
	if made {
		created = append(created, NameCA)
	}
	signer, made, err := loadOrCreate(ctx, st, box, NameProfileSigner, func() (*x509.Certificate, crypto.Signer, error) {
		return newLeaf(ca, org+" Profile Signing", x509.ExtKeyUsageCodeSigning)
	})
	if err != nil {
		return nil, nil, err
	}
	if made {
		created = append(created, NameProfileSigner)
	}
	return &Identities{CA: ca, ProfileSigner: signer}, created, nil
}

func label(name string) string { return "keypair:" + name }

func loadOrCreate(ctx context.Context, st KeypairStore, box *secret.Box, name string,
	gen func() (*x509.Certificate, crypto.Signer, error)) (*Identity, bool, error) {
	kp, err := st.GetKeypair(ctx, name)
	created := false
	if mdmd.IsCode(err, mdmd.ENotFound) {
		cert, key, gerr := gen()
		if gerr != nil {
			return nil, false, fmt.Errorf("generate %s: %w", name, gerr)
		}
		der, gerr := x509.MarshalPKCS8PrivateKey(key)
		if gerr != nil {
			return nil, false, gerr
		}
		sealed, gerr := box.Seal(der, label(name))
		if gerr != nil {
			return nil, false, gerr
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		// Another replica may have won the race; then its pair is used.
		kp, created, err = st.CreateKeypairIfAbsent(ctx, &mdmd.Keypair{Name: name, CertPEM: string(certPEM), KeySealed: sealed})
	}
	if err != nil {
		return nil, false, fmt.Errorf("load %s: %w", name, err)
	}
	id, err := decode(kp, box)
	return id, created, err
}

func decode(kp *mdmd.Keypair, box *secret.Box) (*Identity, error) {
	block, _ := pem.Decode([]byte(kp.CertPEM))
	if block == nil {
		return nil, fmt.Errorf("%s: stored certificate is not PEM", kp.Name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kp.Name, err)
	}
	der, err := box.Open(kp.KeySealed, label(kp.Name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kp.Name, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kp.Name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key is not a signer", kp.Name)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return nil, errors.New(kp.Name + ": key does not match certificate")
	}
	return &Identity{Cert: cert, Key: signer}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA makes a self-signed RSA CA. Apple's SCEP client encrypts its
// request to the CA certificate, so the CA key must be RSA.
func newCA(org string) (*x509.Certificate, crypto.Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: org + " Device CA", Organization: []string{org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newLeaf(ca *Identity, cn string, eku x509.ExtKeyUsage) (*x509.Certificate, crypto.Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn, Organization: ca.Cert.Subject.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}
