package storage

import (
	"context"
	"time"

	"github.com/mdmd/mdmd"
)

// CreateAdminUser stores a new console user; a taken username is a conflict.
func (s *Store) CreateAdminUser(ctx context.Context, u *mdmd.AdminUser) error {
	if err := u.Validate(); err != nil {
		return err
	}
	if u.ID == "" {
		u.ID = newID()
	}
	now := s.Now()
	u.CreatedAt, u.UpdatedAt = now, now
	u.LockedUntil, u.LastLoginAt = utcPtr(u.LockedUntil), utcPtr(u.LastLoginAt)
	return dbErr(s.table(ctx, "admin_users").Create(u).Error, "admin user")
}

// GetAdminUser returns the user with the given ID.
func (s *Store) GetAdminUser(ctx context.Context, id string) (*mdmd.AdminUser, error) {
	var u mdmd.AdminUser
	err := s.table(ctx, "admin_users").Where("id = ?", id).Take(&u).Error
	return &u, dbErr(err, "admin user")
}

// GetAdminUserByUsername returns the user with the given username.
func (s *Store) GetAdminUserByUsername(ctx context.Context, username string) (*mdmd.AdminUser, error) {
	var u mdmd.AdminUser
	err := s.table(ctx, "admin_users").Where("username = ?", username).Take(&u).Error
	return &u, dbErr(err, "admin user")
}

// ListAdminUsers returns every console user by username.
func (s *Store) ListAdminUsers(ctx context.Context) ([]mdmd.AdminUser, error) {
	var out []mdmd.AdminUser
	err := s.table(ctx, "admin_users").Order("username").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "admin users")
}

// AdminUserUpdate is a partial change to a console user.
type AdminUserUpdate = mdmd.AdminUserUpdate

// UpdateAdminUser applies the set fields of u.
func (s *Store) UpdateAdminUser(ctx context.Context, id string, u AdminUserUpdate) (*mdmd.AdminUser, error) {
	set := map[string]any{"updated_at": s.Now()}
	if u.Role != nil {
		if !u.Role.Valid() {
			return nil, mdmd.FieldError("role", "unknown role %q", *u.Role)
		}
		set["role"] = string(*u.Role)
	}
	if u.Disabled != nil {
		set["disabled"] = *u.Disabled
	}
	if u.PasswordHash != nil {
		if *u.PasswordHash == "" {
			return nil, mdmd.FieldError("password", "required")
		}
		set["password_hash"] = *u.PasswordHash
	}
	res := s.table(ctx, "admin_users").Where("id = ?", id).Updates(set)
	if res.Error != nil {
		return nil, dbErr(res.Error, "admin user")
	}
	if res.RowsAffected == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "admin user not found")
	}
	return s.GetAdminUser(ctx, id)
}

// CreateAPIToken stores a new token (its hash, never its secret).
func (s *Store) CreateAPIToken(ctx context.Context, t *mdmd.APIToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.ID == "" {
		t.ID = newID()
	}
	t.CreatedAt = s.Now()
	t.ExpiresAt = utc(t.ExpiresAt)
	t.LastUsedAt, t.RevokedAt = utcPtr(t.LastUsedAt), utcPtr(t.RevokedAt)
	return dbErr(s.table(ctx, "api_tokens").Create(t).Error, "API token")
}

// GetAPIToken returns the token with the given ID.
func (s *Store) GetAPIToken(ctx context.Context, id string) (*mdmd.APIToken, error) {
	var t mdmd.APIToken
	err := s.table(ctx, "api_tokens").Where("id = ?", id).Take(&t).Error
	return &t, dbErr(err, "API token")
}

// GetAPITokenByHash returns the token whose secret hashes to hash.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash string) (*mdmd.APIToken, error) {
	var t mdmd.APIToken
	err := s.table(ctx, "api_tokens").Where("hash = ?", hash).Take(&t).Error
	return &t, dbErr(err, "API token")
}

// ListAPITokens returns every token, newest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]mdmd.APIToken, error) {
	var out []mdmd.APIToken
	err := s.table(ctx, "api_tokens").Order("id DESC").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "API tokens")
}

// RevokeAPIToken revokes a token; revoking twice keeps the first time.
func (s *Store) RevokeAPIToken(ctx context.Context, id string) (*mdmd.APIToken, error) {
	err := s.table(ctx, "api_tokens").Where("id = ? AND revoked_at IS NULL", id).
		Update("revoked_at", s.Now()).Error
	if err != nil {
		return nil, dbErr(err, "API token")
	}
	return s.GetAPIToken(ctx, id)
}

// TouchAPIToken records a use of the token. To keep authentication from
// writing on every request, it updates only when the stored time is older
// than a minute.
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	at = utc(at)
	err := s.table(ctx, "api_tokens").
		Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", id, at.Add(-time.Minute)).
		Update("last_used_at", at).Error
	return dbErr(err, "API token")
}

// AudienceApproved reports whether an active relying-party token names
// the audience: only such audiences get device compliance tokens.
func (s *Store) AudienceApproved(ctx context.Context, audience string) (bool, error) {
	var n int64
	err := s.table(ctx, "api_tokens").Where("role = ? AND audience = ? AND revoked_at IS NULL AND expires_at > ?",
		string(mdmd.RoleRelyingParty), audience, s.Now()).Count(&n).Error
	return n > 0, dbErr(err, "API tokens")
}

// RevokeTokensOwnedBy revokes every active API token the admin user owns
// (a user who is disabled keeps no working credential), and returns how
// many it revoked.
func (s *Store) RevokeTokensOwnedBy(ctx context.Context, userID string) (int64, error) {
	if userID == "" {
		return 0, mdmd.FieldError("user", "required")
	}
	res := s.table(ctx, "api_tokens").Where("owner_user_id = ? AND revoked_at IS NULL", userID).Update("revoked_at", s.Now())
	return res.RowsAffected, dbErr(res.Error, "API tokens")
}
