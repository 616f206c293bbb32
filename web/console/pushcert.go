package console

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/apns"
)

// PushCertificate is the APNs push certificate service.
type PushCertificate interface {
	Info(ctx context.Context) (*apns.CertInfo, error)
	UploadPEM(ctx context.Context, certPEM, keyPEM []byte) (*apns.CertInfo, error)
	UploadP12(ctx context.Context, p12 []byte, password string) (*apns.CertInfo, error)
}

type pushCertContent struct {
	Info *apns.CertInfo // nil when none is uploaded
}

func (c *Console) pushCertPage(w http.ResponseWriter, r *http.Request, status int, data *pageData) error {
	ci, err := c.o.PushCert.Info(r.Context())
	if err != nil && !mdmd.IsCode(err, mdmd.ENotFound) && !mdmd.IsCode(err, mdmd.EConflict) {
		return err
	}
	data.Title, data.Nav, data.Content = "Apple push certificate", "settings", &pushCertContent{Info: ci}
	c.render(w, r, status, "pushcert", data)
	return nil
}

func (c *Console) pushCert(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if r.URL.Query().Get("done") == "upload" {
		data.Flash = "Push certificate saved."
	}
	return c.pushCertPage(w, r, http.StatusOK, data)
}

// uploadPushCert takes a .p12 file (with its password) or the PEM of the
// certificate and its key.
func (c *Console) uploadPushCert(w http.ResponseWriter, r *http.Request) error {
	var ci *apns.CertInfo
	var err error
	certPEM, keyPEM := strings.TrimSpace(r.PostFormValue("cert_pem")), strings.TrimSpace(r.PostFormValue("key_pem"))
	file, _, ferr := r.FormFile("p12")
	switch {
	case ferr == nil:
		defer file.Close()
		raw, rerr := io.ReadAll(io.LimitReader(file, 1<<20))
		if rerr != nil {
			return rerr
		}
		ci, err = c.o.PushCert.UploadP12(r.Context(), raw, r.PostFormValue("password"))
	case certPEM != "" && keyPEM != "":
		ci, err = c.o.PushCert.UploadPEM(r.Context(), []byte(certPEM), []byte(keyPEM))
	default:
		err = mdmd.FieldError("p12", "choose a .p12 file, or paste both the certificate and the key as PEM")
	}
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		return c.pushCertPage(w, r, statusOf(err), &pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err)})
	}
	c.audit(r, "apns.certificate.upload", "setting", "apns-push", mdmd.OutcomeSuccess, "",
		map[string]any{"topic": ci.Topic, "not_after": ci.NotAfter, "via": "console"})
	http.Redirect(w, r, "/settings/push-certificate?done=upload", http.StatusSeeOther)
	return nil
}
