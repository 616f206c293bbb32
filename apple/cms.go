// Package apple speaks Apple's MDM protocol: CMS signatures over
// enrollment profiles and device requests, the check-in and command
// messages, and the command payloads mdmd sends.
package apple

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/mdmd/mdmd"
)

func init() {
	// The pkcs7 package defaults to SHA-1 signatures and DES content
	// encryption. Everything mdmd signs or encrypts, including what the SCEP
	// library builds on top of pkcs7, uses SHA-256 and AES-256-CBC.
	if err := pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256); err != nil {
		panic(err)
	}
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
}

// Sign returns content wrapped in CMS SignedData, signed with SHA-256 by
// the certificate and key, the certificate and its chain included.
func Sign(content []byte, cert *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	return sd.Finish()
}

// SignDetached returns a detached CMS signature over content (the form of
// the Mdm-Signature header, base64 encoded by the caller).
func SignDetached(content []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	sd.Detach()
	return sd.Finish()
}

// VerifySigned checks attached SignedData (a signed profile) against the
// roots and returns its content and signer.
func VerifySigned(signed []byte, roots *x509.CertPool) ([]byte, *x509.Certificate, error) {
	p7, err := pkcs7.Parse(signed)
	if err != nil {
		return nil, nil, fmt.Errorf("not CMS SignedData: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, nil, fmt.Errorf("want one signer, got %d", len(p7.Signers))
	}
	if err := p7.VerifyWithChain(roots); err != nil {
		return nil, nil, err
	}
	return p7.Content, p7.GetOnlySigner(), nil
}

// MaxSignatureHeader bounds the Mdm-Signature header (base64 of a CMS
// structure with one certificate, normally about 2 to 3 KB).
const MaxSignatureHeader = 16 << 10

// VerifyMdmSignature checks an Mdm-Signature header: a base64, detached CMS
// signature over body whose single signer chains to roots (mdmd's device
// CA) and is valid at now. It returns the signer. Every failure is an
// EDeviceAuth error, which the HTTP layer answers with 403, never 401, which
// would make the device unenroll.
func VerifyMdmSignature(header string, body []byte, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	fail := func(format string, args ...any) error {
		return mdmd.Errorf(mdmd.EDeviceAuth, "Mdm-Signature: "+format, args...)
	}
	if header == "" {
		return nil, fail("missing")
	}
	if len(header) > MaxSignatureHeader {
		return nil, fail("too large")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(header))
	if err != nil {
		return nil, fail("not base64")
	}
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		return nil, fail("not a CMS signature")
	}
	if len(p7.Signers) != 1 || len(p7.Certificates) == 0 {
		return nil, fail("want exactly one signer with its certificate")
	}
	p7.Content = body
	if err := p7.VerifyWithChainAtTime(roots, now); err != nil {
		return nil, fail("does not verify: %v", err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fail("no signer certificate")
	}
	return signer, nil
}

// CertFingerprint is the hex SHA-256 of a certificate, the form in which
// mdmd binds an identity certificate to a device.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
