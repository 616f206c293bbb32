package apns

import (
	"encoding/base64"
	"net/http"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// RegisterAPI adds the push certificate routes.
func (s *Service) RegisterAPI(reg web.Registrar) {
	reg.Handle("GET", "/apple/push-certificate", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		ci, err := s.Info(r.Context())
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, ci)
		return nil
	})
	reg.HandleJSON("PUT", "/apple/push-certificate", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			CertPEM  string `json:"cert_pem"`
			KeyPEM   string `json:"key_pem"`
			P12      string `json:"p12_base64"`
			Password string `json:"password"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		var ci *CertInfo
		var err error
		switch {
		case in.P12 != "" && in.CertPEM == "":
			raw, derr := base64.StdEncoding.DecodeString(in.P12)
			if derr != nil {
				return mdmd.FieldError("p12_base64", "not base64")
			}
			ci, err = s.UploadP12(r.Context(), raw, in.Password)
		case in.CertPEM != "" && in.KeyPEM != "" && in.P12 == "":
			ci, err = s.UploadPEM(r.Context(), []byte(in.CertPEM), []byte(in.KeyPEM))
		default:
			return mdmd.Errorf(mdmd.EInvalid, "give either cert_pem and key_pem, or p12_base64 (and password)")
		}
		if err != nil {
			return err
		}
		reg.Audit(r, "apns.certificate.upload", "setting", KeypairName, mdmd.OutcomeSuccess, "", ci)
		web.WriteJSON(w, http.StatusOK, ci)
		return nil
	})
}
