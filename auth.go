package mdmd

import (
	"regexp"
	"time"
)

// Role is what a principal (console user or API token) may do. Roles are
// least-privilege bundles of permissions; Role.Can is the single place
// where that mapping lives.
type Role string

const (
	RoleViewer      Role = "viewer"       // read inventory and state
	RoleHelpdesk    Role = "helpdesk"     // viewer, plus query posture, lock, clear passcode
	RoleAdmin       Role = "admin"        // everything
	RoleAuditor     Role = "auditor"      // the audit log
	RoleMTDPartner  Role = "mtd_partner"  // the threat-level API only
	RoleSSFReceiver Role = "ssf_receiver" // the shared-signals stream API only
	// RoleRelyingParty is an application (an identity provider, a VPN
	// gateway) approved by an admin to get device compliance tokens for
	// its own audience, which its API token names.
	RoleRelyingParty Role = "relying_party"
)

// Roles lists every role in a stable order.
var Roles = []Role{RoleViewer, RoleHelpdesk, RoleAdmin, RoleAuditor, RoleMTDPartner, RoleSSFReceiver, RoleRelyingParty}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	_, ok := rolePermissions[r]
	return ok
}

// Permission is one capability that a route requires.
type Permission string

const (
	PermDevicesRead      Permission = "devices:read"
	PermDevicesWrite     Permission = "devices:write" // rename, change owner, groups
	PermDevicesDelete    Permission = "devices:delete"
	PermCommandsRead     Permission = "commands:read"
	PermCommandsQuery    Permission = "commands:query" // posture queries
	PermCommandsLock     Permission = "commands:lock"  // lock, clear passcode
	PermCommandsWipe     Permission = "commands:wipe"
	PermGroupsWrite      Permission = "groups:write"
	PermTokensManage     Permission = "tokens:manage"
	PermUsersManage      Permission = "users:manage"
	PermSettingsManage   Permission = "settings:manage"
	PermJobsRead         Permission = "jobs:read"
	PermAuditRead        Permission = "audit:read"
	PermThreatReport     Permission = "threat:report"
	PermSSFStreams       Permission = "ssf:streams"
	PermEnrollManage     Permission = "enroll:manage"     // enrollment links and profiles
	PermProfilesManage   Permission = "profiles:manage"   // configuration profiles and their assignment
	PermComplianceManage Permission = "compliance:manage" // compliance policies and their assignment
	PermComplianceToken  Permission = "compliance:token"  // device compliance tokens for the caller's audience
)

var rolePermissions = map[Role][]Permission{
	RoleViewer:       {PermDevicesRead, PermCommandsRead},
	RoleHelpdesk:     {PermDevicesRead, PermCommandsRead, PermCommandsQuery, PermCommandsLock},
	RoleAuditor:      {PermAuditRead},
	RoleMTDPartner:   {PermThreatReport},
	RoleSSFReceiver:  {PermSSFStreams},
	RoleRelyingParty: {PermComplianceToken},
	RoleAdmin: {PermDevicesRead, PermDevicesWrite, PermDevicesDelete, PermCommandsRead,
		PermCommandsQuery, PermCommandsLock, PermCommandsWipe, PermGroupsWrite,
		PermTokensManage, PermUsersManage, PermSettingsManage, PermJobsRead, PermAuditRead, PermEnrollManage, PermProfilesManage, PermComplianceManage},
}

// Can reports whether the role grants the permission. Note that the admin
// role deliberately lacks the partner permissions: an MTD partner or SSF
// receiver credential is separate from any administrator's.
func (r Role) Can(p Permission) bool {
	for _, q := range rolePermissions[r] {
		if q == p {
			return true
		}
	}
	return false
}

// Principal is the authenticated caller of a request.
type Principal struct {
	// Type is ActorAdmin for a console user and ActorToken for an API token.
	Type string
	// ID is the admin user's or the token's ID.
	ID string
	// Name is the username or the token's name, for the audit log.
	Name string
	Role Role
	// Audience is a relying party's audience (its token's).
	Audience string
	// Person is the admin user behind the request: the signed-in user, or
	// the owner of the token (whoever minted it, through any chain of
	// tokens). Empty for tokens that predate owners. Two-person rules
	// compare people, not credentials.
	Person string
}

// AdminUser is a person who signs in to the console.
type AdminUser struct {
	ID           string     `json:"id" gorm:"column:id;primaryKey"`
	Username     string     `json:"username" gorm:"column:username"`
	PasswordHash string     `json:"-" gorm:"column:password_hash"`
	Role         Role       `json:"role" gorm:"column:role"`
	Disabled     bool       `json:"disabled" gorm:"column:disabled"`
	FailedLogins int        `json:"-" gorm:"column:failed_logins"`
	LockedUntil  *time.Time `json:"locked_until,omitempty" gorm:"column:locked_until"`
	LastLoginAt  *time.Time `json:"last_login_at,omitempty" gorm:"column:last_login_at"`
	CreatedAt    time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt    time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

var usernameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,99}$`)

// AdminUserUpdate is a partial change to a console user.
type AdminUserUpdate struct {
	Role         *Role
	Disabled     *bool
	PasswordHash *string
}

// Validate checks an admin user before it is stored.
func (u *AdminUser) Validate() error {
	if !usernameRE.MatchString(u.Username) {
		return FieldError("username", "1 to 100 letters, digits, '.', '_', '@' or '-'")
	}
	if !u.Role.Valid() {
		return FieldError("role", "unknown role %q", u.Role)
	}
	if u.PasswordHash == "" {
		return FieldError("password", "required")
	}
	return nil
}

// APIToken is a bearer credential for scripts and integrations. Only the
// SHA-256 of the secret is stored; the secret is shown once, at creation.
type APIToken struct {
	ID     string `json:"id" gorm:"column:id;primaryKey"`
	Name   string `json:"name" gorm:"column:name"`
	Prefix string `json:"prefix" gorm:"column:prefix"`
	Hash   string `json:"-" gorm:"column:hash"`
	Role   Role   `json:"role" gorm:"column:role"`
	// Audience: a relying party's (required) or an SSF receiver's (its
	// streams' aud, optional); no other role has one.
	Audience string `json:"audience,omitempty" gorm:"column:audience"`
	// OwnerUserID is the admin user who owns the token: the one who
	// minted it, or the owner of the token that minted it.
	OwnerUserID string     `json:"owner_user_id,omitempty" gorm:"column:owner_user_id"`
	CreatedBy   string     `json:"created_by" gorm:"column:created_by"`
	CreatedAt   time.Time  `json:"created_at" gorm:"column:created_at"`
	ExpiresAt   time.Time  `json:"expires_at" gorm:"column:expires_at"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty" gorm:"column:last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty" gorm:"column:revoked_at"`
}

// Validate checks a token before it is stored.
func (t *APIToken) Validate() error {
	if t.Name == "" || len(t.Name) > 100 {
		return FieldError("name", "must be 1 to 100 characters")
	}
	if !t.Role.Valid() {
		return FieldError("role", "unknown role %q", t.Role)
	}
	switch {
	case t.Role == RoleRelyingParty && (t.Audience == "" || len(t.Audience) > 200):
		return FieldError("audience", "a relying party's token names its audience (1 to 200 characters)")
	case t.Role == RoleSSFReceiver && len(t.Audience) > 200:
		return FieldError("audience", "at most 200 characters")
	case t.Role != RoleRelyingParty && t.Role != RoleSSFReceiver && t.Audience != "":
		return FieldError("audience", "only relying-party and SSF receiver tokens have an audience")
	}
	if len(t.Hash) != 64 {
		return FieldError("hash", "must be a hex SHA-256")
	}
	if t.ExpiresAt.IsZero() {
		return FieldError("expires_at", "required: tokens always expire")
	}
	return nil
}

// Active reports whether the token may authenticate at the given time.
func (t *APIToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}
