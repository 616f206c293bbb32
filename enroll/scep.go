package enroll

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
)

// SCEP capabilities: renewal, SHA-256 signatures, AES content encryption,
// PKIOperation over POST.
const scepCaps = "Renewal\nSHA-256\nAES\nPOSTPKIOperation\nSCEPStandard\n"

// maxSCEPMessage bounds a PKIOperation body.
const maxSCEPMessage = 64 << 10

// ServeSCEP is the SCEP server (RFC 8894): GetCACaps, GetCACert and
// PKIOperation. A challenge works once; a renewal must be signed by the
// device's current, enrolled identity.
func (s *Service) ServeSCEP(w http.ResponseWriter, r *http.Request) {
	switch op := r.URL.Query().Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, scepCaps)
	case "GetCACert":
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(s.ids.CA.Cert.Raw)
	case "PKIOperation":
		var msg []byte
		var err error
		switch r.Method {
		case http.MethodPost:
			msg, err = io.ReadAll(io.LimitReader(r.Body, maxSCEPMessage+1))
		case http.MethodGet:
			msg, err = base64.StdEncoding.DecodeString(r.URL.Query().Get("message"))
		default:
			http.Error(w, "PKIOperation takes GET or POST", http.StatusMethodNotAllowed)
			return
		}
		if err != nil || len(msg) == 0 || len(msg) > maxSCEPMessage {
			http.Error(w, "malformed or oversized SCEP message", http.StatusBadRequest)
			return
		}
		resp, err := s.pkiOperation(r, msg)
		if err != nil {
			s.log.Info("SCEP request rejected", "err", err, "remote", r.RemoteAddr)
			http.Error(w, "invalid SCEP message: "+mdmd.ErrorMessage(err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-pki-message")
		w.Write(resp)
	default:
		http.Error(w, fmt.Sprintf("unknown SCEP operation %q", op), http.StatusBadRequest)
	}
}

// pkiOperation answers a PKIMessage. A message that cannot be read at all
// is an error (400); a readable request that is refused gets a signed
// CertRep FAILURE, as the protocol expects.
func (s *Service) pkiOperation(r *http.Request, raw []byte) ([]byte, error) {
	msg, err := scep.ParsePKIMessage(raw)
	if err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "not a PKIMessage: %v", err)
	}
	if err := msg.DecryptPKIEnvelope(s.ids.CA.Cert, s.ids.CA.Key); err != nil {
		return nil, mdmd.Errorf(mdmd.EInvalid, "cannot decrypt the envelope: %v", err)
	}
	fail := func(reason error, info scep.FailInfo) ([]byte, error) {
		s.log.Info("SCEP request refused", "reason", reason, "message_type", msg.MessageType.String(), "transaction", msg.TransactionID)
		rep, err := msg.Fail(s.ids.CA.Cert, s.ids.CA.Key, info)
		if err != nil {
			return nil, err
		}
		return rep.Raw, nil
	}
	csr := msg.CSRReqMessage.CSR
	if csr == nil {
		return fail(fmt.Errorf("no CSR"), scep.BadRequest)
	}
	if err := csr.CheckSignature(); err != nil {
		return fail(fmt.Errorf("CSR signature: %w", err), scep.BadMessageCheck)
	}
	if k, ok := csr.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() < 2048 {
		return fail(fmt.Errorf("key must be RSA of at least 2048 bits"), scep.BadAlg)
	}
	var signer *x509.Certificate
	switch msg.MessageType {
	case scep.PKCSReq:
		if msg.CSRReqMessage.ChallengePassword == "" {
			return fail(fmt.Errorf("no challenge password"), scep.BadRequest)
		}
	case scep.RenewalReq:
		var err error
		if signer, err = renewalSigner(raw); err != nil {
			return fail(err, scep.BadMessageCheck)
		}
		if _, err := signer.Verify(x509.VerifyOptions{Roots: s.caPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return fail(fmt.Errorf("renewal signer not issued by this CA: %w", err), scep.BadMessageCheck)
		}
	default:
		return fail(fmt.Errorf("unsupported message type %s", msg.MessageType), scep.BadRequest)
	}
	issued, err := s.issue(csr)
	if err != nil {
		return nil, err
	}
	cert := &mdmd.DeviceCert{Fingerprint: apple.CertFingerprint(issued), Serial: issued.SerialNumber.Text(16),
		Subject: issued.Subject.String(), NotBefore: issued.NotBefore, NotAfter: issued.NotAfter}
	if signer == nil {
		// The challenge is used up only if the certificate is stored, in
		// the same transaction.
		if err := s.st.IssueDeviceCert(r.Context(), hashSecret(msg.CSRReqMessage.ChallengePassword), cert); err != nil {
			return fail(err, scep.BadRequest)
		}
	} else {
		fp := apple.CertFingerprint(signer)
		udid, err := s.st.RenewalTarget(r.Context(), fp)
		if err != nil {
			return fail(err, scep.BadRequest)
		}
		cert.Renews, cert.UDID = &fp, &udid
		if err := s.st.RecordDeviceCert(r.Context(), cert); err != nil {
			return nil, err
		}
	}
	rep, err := msg.Success(s.ids.CA.Cert, s.ids.CA.Key, issued)
	if err != nil {
		return nil, err
	}
	s.log.Info("device identity issued", "fingerprint", cert.Fingerprint, "renewal", cert.Renews != nil,
		"not_after", issued.NotAfter)
	return rep.Raw, nil
}

// renewalSigner returns the certificate that signed a RenewalReq.
func renewalSigner(raw []byte) (*x509.Certificate, error) {
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		return nil, err
	}
	if signer := p7.GetOnlySigner(); signer != nil {
		return signer, nil
	}
	return nil, fmt.Errorf("renewal has no single signer")
}

func (s *Service) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.ids.CA.Cert)
	return pool
}

// issue signs a device identity certificate for the CSR's key. The subject
// is kept to the CSR's common name and organisation; nothing else from
// the CSR (extensions, SANs) is copied.
func (s *Service) issue(csr *x509.CertificateRequest) (*x509.Certificate, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: csr.Subject.CommonName, Organization: csr.Subject.Organization},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(s.cfg.CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ids.CA.Cert, csr.PublicKey, s.ids.CA.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
