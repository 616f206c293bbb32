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
	DeleteUserConsoleSessions(ctx context.Context, userID string) (int64, error)
}

// Service changes console users, for the API and the console alike.
type Service struct{ Store Store }

// Create adds a console user with a password (argon2id) and a role.
func (s Service) Create(ctx context.Context, username, password string, role mdmd.Role) (*mdmd.AdminUser, error) {
	if !role.Valid() {
		return nil, mdmd.FieldError("role", "unknown role %q", role)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return nil, err
	}
	u := &mdmd.AdminUser{Username: username, PasswordHash: hash, Role: role}
	return u, s.Store.CreateAdminUser(ctx, u)
}

// Change is a change to a user; nil fields stay as they are.
type Change struct {
	Role     *mdmd.Role `json:"role"`
	Disabled *bool      `json:"disabled"`
	Password *string    `json:"password"`
}

// Update applies a change made by p. Nobody changes their own role or
// disables themselves: another admin must, so that nobody locks everyone
// out by mistake. Disabling a user, or changing their role, revokes every
// token they own (a token keeps the role it was minted with) and ends
// their console sessions (a session must pass the new role's second
// factor); the number of tokens revoked is returned.
func (s Service) Update(ctx context.Context, p *mdmd.Principal, id string, c Change) (*mdmd.AdminUser, int64, error) {
	if p != nil && p.Person == id && (c.Role != nil || c.Disabled != nil) {
		return nil, 0, mdmd.Errorf(mdmd.EConflict, "you cannot change your own role or disable yourself; ask another administrator")
	}
	upd := mdmd.AdminUserUpdate{Role: c.Role, Disabled: c.Disabled}
	if c.Password != nil {
		hash, err := auth.HashPassword(*c.Password)
		if err != nil {
			return nil, 0, err
		}
		upd.PasswordHash = &hash
	}
	before, err := s.Store.GetAdminUser(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	u, err := s.Store.UpdateAdminUser(ctx, id, upd)
	if err != nil {
		return nil, 0, err
	}
	var revoked int64
	if (c.Disabled != nil && *c.Disabled) || (c.Role != nil && *c.Role != before.Role) {
		if revoked, err = s.Store.RevokeTokensOwnedBy(ctx, id); err != nil {
			return nil, 0, err
		}
		if _, err := s.Store.DeleteUserConsoleSessions(ctx, id); err != nil {
			return nil, 0, err
		}
	}
	return u, revoked, nil
}

// ResetTOTP removes a user's second factor: they enroll a new one at
// their next sign-in.
func (s Service) ResetTOTP(ctx context.Context, id string) error {
	if _, err := s.Store.GetAdminUser(ctx, id); err != nil {
		return err
	}
	if err := s.Store.DeleteAdminTOTP(ctx, id); err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
		return err
	}
	return nil
}

// API manages console users. Every route needs users:manage (admins).
type API struct{ Store Store }

// RegisterAPI adds the user routes.
func (a API) RegisterAPI(reg web.Registrar) {
	const perm = mdmd.PermUsersManage
	svc := Service{Store: a.Store}
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
		u, err := svc.Create(r.Context(), in.Username, in.Password, in.Role)
		if err != nil {
			return err
		}
		reg.Audit(r, "user.create", "admin_user", u.ID, mdmd.OutcomeSuccess, "", map[string]any{"username": u.Username, "role": u.Role})
		web.WriteJSON(w, http.StatusCreated, u)
		return nil
	})
	// Change a user's role, disable or enable them, or set a new password.
	reg.HandleJSON("PATCH", "/users/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		var in Change
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		u, revoked, err := svc.Update(r.Context(), web.PrincipalFrom(r.Context()), id, in)
		if err != nil {
			return err
		}
		reg.Audit(r, "user.update", "admin_user", id, mdmd.OutcomeSuccess, "",
			map[string]any{"role": in.Role, "disabled": in.Disabled, "password_changed": in.Password != nil, "tokens_revoked": revoked})
		web.WriteJSON(w, http.StatusOK, u)
		return nil
	})
	reg.Handle("DELETE", "/users/{id}/totp", perm, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := svc.ResetTOTP(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "user.totp_reset", "admin_user", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
