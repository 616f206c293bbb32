// Package users is the admin API for the people who run mdmd: console
// users with a role, their second factor and their credentials.
package users

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/web"
)

// Store is what user management needs from storage.
type Store interface {
	CreateAdminUser(ctx context.Context, u *mdmd.AdminUser) error
	GetAdminUser(ctx context.Context, id string) (*mdmd.AdminUser, error)
	ListAdminUsers(ctx context.Context) ([]mdmd.AdminUser, error)
	UpdateAdminUser(ctx context.Context, id string, u mdmd.AdminUserUpdate) (*mdmd.AdminUser, error)
	DeleteAdminTOTP(ctx context.Context, userID string) error
	RevokeTokensOwnedBy(ctx context.Context, userID string) (int64, error)
}

// API manages console users. Every route needs users:manage (admins).
type API struct{ Store Store }

// RegisterAPI adds the user routes.
func (a API) RegisterAPI(reg web.Registrar) {
	const perm = mdmd.PermUsersManage
	reg.Handle("GET", "/users", perm, func(w http.ResponseWriter, r *http.Request) error {
		us, err := a.Store.ListAdminUsers(r.Context())
		if err != nil {
			return err
		}
		if us == nil {
			us = []mdmd.AdminUser{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": us})
		return nil
	})
	reg.HandleJSON("POST", "/users", perm, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Username string    `json:"username"`
			Password string    `json:"password"`
			Role     mdmd.Role `json:"role"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		if !in.Role.Valid() {
			return mdmd.FieldError("role", "unknown role %q", in.Role)
		}
		hash, err := auth.HashPassword(in.Password)
		if err != nil {
			return err
		}
		u := &mdmd.AdminUser{Username: in.Username, PasswordHash: hash, Role: in.Role}
		if err := a.Store.CreateAdminUser(r.Context(), u); err != nil {
			return err
		}
		reg.Audit(r, "user.create", "admin_user", u.ID, mdmd.OutcomeSuccess, "", map[string]any{"username": u.Username, "role": u.Role})
		web.WriteJSON(w, http.StatusCreated, u)
		return nil
	})
	// Change a user's role, disable or enable them, or set a new password.
	// Nobody changes their own role or disables themselves: another admin
	// must, so an admin cannot lock everyone out by mistake.
	reg.HandleJSON("PATCH", "/users/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Role     *mdmd.Role `json:"role"`
			Disabled *bool      `json:"disabled"`
			Password *string    `json:"password"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		if p := web.PrincipalFrom(r.Context()); p != nil && p.Person == id && (in.Role != nil || in.Disabled != nil) {
			return mdmd.Errorf(mdmd.EConflict, "you cannot change your own role or disable yourself; ask another administrator")
		}
		upd := mdmd.AdminUserUpdate{Role: in.Role, Disabled: in.Disabled}
		if in.Password != nil {
			hash, err := auth.HashPassword(*in.Password)
			if err != nil {
				return err
			}
			upd.PasswordHash = &hash
		}
		u, err := a.Store.UpdateAdminUser(r.Context(), id, upd)
		if err != nil {
			return err
		}
		details := map[string]any{"role": in.Role, "disabled": in.Disabled, "password_changed": in.Password != nil}
		if in.Disabled != nil && *in.Disabled {
			n, err := a.Store.RevokeTokensOwnedBy(r.Context(), id)
			if err != nil {
				return err
			}
			details["tokens_revoked"] = n
		}
		reg.Audit(r, "user.update", "admin_user", id, mdmd.OutcomeSuccess, "", details)
		web.WriteJSON(w, http.StatusOK, u)
		return nil
	})
	// Reset a user's second factor: they enroll a new one at next sign-in.
	reg.Handle("DELETE", "/users/{id}/totp", perm, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if _, err := a.Store.GetAdminUser(r.Context(), id); err != nil {
			return err
		}
		if err := a.Store.DeleteAdminTOTP(r.Context(), id); err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
			return err
		}
		reg.Audit(r, "user.totp_reset", "admin_user", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
