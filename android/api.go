package android

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// EnterpriseView is the bound enterprise as admins see it: with the URL
// to configure as the Pub/Sub push subscription's endpoint.
type EnterpriseView struct {
	Name              string   `json:"name"`
	DisplayName       string   `json:"display_name"`
	PubsubTopic       string   `json:"pubsub_topic"`
	NotificationTypes []string `json:"notification_types"`
	PushEndpoint      string   `json:"push_endpoint"`
}

// View returns the admin's view of an enterprise (the bound one when e is
// nil; EConflict if none is bound).
func (s *Service) View(ctx context.Context, e *Enterprise) (*EnterpriseView, error) {
	if e == nil {
		var err error
		if e, err = s.GetEnterprise(ctx); err != nil {
			return nil, err
		}
	}
	push, err := s.PushEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &EnterpriseView{Name: e.Name, DisplayName: e.DisplayName, PubsubTopic: e.PubsubTopic,
		NotificationTypes: e.NotificationTypes, PushEndpoint: push}, nil
}

// PendingSignup is the name of the sign-up URL last handed out, which
// completing the sign-up needs (empty if there was none).
func (s *Service) PendingSignup(ctx context.Context) (string, error) {
	name, err := s.st.GetSetting(ctx, settingSignup)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return "", nil
	}
	return name, err
}

// RegisterAPI adds the Android admin routes.
func (s *Service) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/android/signup", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			CallbackURL string `json:"callback_url"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		u, err := s.StartSignup(r.Context(), in.CallbackURL)
		if err != nil {
			return err
		}
		reg.Audit(r, "android.signup", "setting", "android.enterprise", mdmd.OutcomeSuccess, "", nil)
		web.WriteJSON(w, http.StatusOK, map[string]string{"signup_url": u.Url, "signup_url_name": u.Name})
		return nil
	})
	reg.HandleJSON("POST", "/android/enterprise", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			SignupURLName   string `json:"signup_url_name"`
			EnterpriseToken string `json:"enterprise_token"`
			DisplayName     string `json:"display_name"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		e, err := s.CompleteSignup(r.Context(), in.SignupURLName, in.EnterpriseToken, in.DisplayName)
		if err != nil {
			return err
		}
		reg.Audit(r, "android.enterprise.create", "setting", e.Name, mdmd.OutcomeSuccess, "", nil)
		view, err := s.View(r.Context(), e)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusCreated, view)
		return nil
	})
	reg.HandleJSON("PUT", "/android/enterprise", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Name string `json:"name"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		e, err := s.BindExisting(r.Context(), in.Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "android.enterprise.bind", "setting", e.Name, mdmd.OutcomeSuccess, "", nil)
		view, err := s.View(r.Context(), e)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, view)
		return nil
	})
	reg.Handle("GET", "/android/enterprise", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		view, err := s.View(r.Context(), nil)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, view)
		return nil
	})
	reg.HandleJSON("POST", "/android/enrollment-tokens", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		var in TokenInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		t, err := s.CreateToken(r.Context(), in, web.PrincipalFrom(r.Context()).Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "android.token.create", "enrollment_token", t.Token.ID, mdmd.OutcomeSuccess, "", map[string]any{
			"kind": t.Token.Kind, "owner_user": t.Token.OwnerUser, "one_time": t.Token.OneTime, "expires_at": t.Token.ExpiresAt})
		web.WriteJSON(w, http.StatusCreated, map[string]any{"token": t.Token, "value": t.Value, "qr_code": t.QRCode,
			"qr_png": "/api/v1/android/enrollment-tokens/" + t.Token.ID + "/qr.png"})
		return nil
	})
	reg.Handle("GET", "/android/enrollment-tokens", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		ts, err := s.st.ListAndroidTokens(r.Context())
		if err != nil {
			return err
		}
		if ts == nil {
			ts = []mdmd.AndroidToken{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": ts})
		return nil
	})
	reg.Handle("DELETE", "/android/enrollment-tokens/{id}", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		t, err := s.RevokeToken(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		reg.Audit(r, "android.token.revoke", "enrollment_token", t.ID, mdmd.OutcomeSuccess, "", nil)
		web.WriteJSON(w, http.StatusOK, t)
		return nil
	})
	reg.Handle("GET", "/android/enrollment-tokens/{id}/qr.png", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		png, err := s.QRPNG(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(png)
		return nil
	})
}
