package storage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"time"

	"gorm.io/gorm"

	"github.com/mdmd/mdmd"
)

// CreateConsoleSession stores a new console session.
func (s *Store) CreateConsoleSession(ctx context.Context, cs *mdmd.ConsoleSession) error {
	if len(cs.IDHash) != 64 || cs.UserID == "" || cs.CSRFToken == "" || cs.ExpiresAt.IsZero() {
		return mdmd.Errorf(mdmd.EInvalid, "console session: id hash, user, CSRF token and expiry are required")
	}
	now := s.Now()
	cs.CreatedAt, cs.LastSeenAt, cs.ExpiresAt = now, now, utc(cs.ExpiresAt)
	return dbErr(s.table(ctx, "console_sessions").Create(cs).Error, "console session")
}

// GetConsoleSession returns the session whose ID hashes to idHash.
func (s *Store) GetConsoleSession(ctx context.Context, idHash string) (*mdmd.ConsoleSession, error) {
	var cs mdmd.ConsoleSession
	err := s.table(ctx, "console_sessions").Where("id_hash = ?", idHash).Take(&cs).Error
	return &cs, dbErr(err, "console session")
}

// TouchConsoleSession records activity on a session. To keep page views
// from writing every time, it writes only when the stored time is over a
// minute older.
func (s *Store) TouchConsoleSession(ctx context.Context, idHash string, at time.Time) error {
	at = utc(at)
	err := s.table(ctx, "console_sessions").Where("id_hash = ? AND last_seen_at < ?", idHash, at.Add(-time.Minute)).
		Update("last_seen_at", at).Error
	return dbErr(err, "console session")
}

// CompleteConsoleMFA marks that the session's second factor was given.
func (s *Store) CompleteConsoleMFA(ctx context.Context, idHash string) error {
	res := s.table(ctx, "console_sessions").Where("id_hash = ?", idHash).
		Updates(map[string]any{"mfa_done": true, "last_seen_at": s.Now()})
	if res.Error != nil {
		return dbErr(res.Error, "console session")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "console session not found")
	}
	return nil
}

// DeleteConsoleSession ends a session (logging out); ending one that is
// gone is not an error.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash string) error {
	return dbErr(s.table(ctx, "console_sessions").Where("id_hash = ?", idHash).Delete(&mdmd.ConsoleSession{}).Error,
		"console session")
}

// PruneConsoleSessions deletes sessions past their absolute expiry or idle
// since before idleBefore.
func (s *Store) PruneConsoleSessions(ctx context.Context, idleBefore time.Time) (int64, error) {
	res := s.table(ctx, "console_sessions").Where("expires_at < ? OR last_seen_at < ?", s.Now(), utc(idleBefore)).
		Delete(&mdmd.ConsoleSession{})
	return res.RowsAffected, dbErr(res.Error, "console sessions")
}

// RecordLoginFailure counts a failed sign-in of the user. At maxFailures
// the account is locked for lockFor and the count starts again. It
// returns the user as stored after the change.
func (s *Store) RecordLoginFailure(ctx context.Context, userID string, maxFailures int, lockFor time.Duration) (*mdmd.AdminUser, error) {
	var out *mdmd.AdminUser
	err := s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		err := tx.table(ctx, "admin_users").Where("id = ?", userID).
			Updates(map[string]any{"failed_logins": gorm.Expr("failed_logins + 1"), "updated_at": now}).Error
		if err != nil {
			return dbErr(err, "admin user")
		}
		u, err := tx.GetAdminUser(ctx, userID)
		if err != nil {
			return err
		}
		if u.FailedLogins >= maxFailures {
			until := now.Add(lockFor)
			if err := tx.table(ctx, "admin_users").Where("id = ?", userID).
				Updates(map[string]any{"failed_logins": 0, "locked_until": until}).Error; err != nil {
				return dbErr(err, "admin user")
			}
			u.FailedLogins, u.LockedUntil = 0, &until
		}
		out = u
		return nil
	})
	return out, err
}

// RecordLoginSuccess clears the user's failure count and lock and records
// the sign-in time.
func (s *Store) RecordLoginSuccess(ctx context.Context, userID string) error {
	now := s.Now()
	return dbErr(s.table(ctx, "admin_users").Where("id = ?", userID).
		Updates(map[string]any{"failed_logins": 0, "locked_until": nil, "last_login_at": now, "updated_at": now}).Error,
		"admin user")
}

// GetAdminTOTP returns the user's TOTP factor (ENotFound if none).
func (s *Store) GetAdminTOTP(ctx context.Context, userID string) (*mdmd.AdminTOTP, error) {
	var t mdmd.AdminTOTP
	err := s.table(ctx, "admin_totp").Where("user_id = ?", userID).Take(&t).Error
	return &t, dbErr(err, "TOTP factor")
}

// PutPendingTOTP stores a new, unconfirmed TOTP secret for the user,
// replacing an unconfirmed one. A confirmed factor is never replaced
// (EConflict): resetting it is an administrator's action.
func (s *Store) PutPendingTOTP(ctx context.Context, userID string, sealed []byte) error {
	return s.Tx(ctx, func(tx *Store) error {
		cur, err := tx.GetAdminTOTP(ctx, userID)
		switch {
		case err == nil && cur.ConfirmedAt != nil:
			return mdmd.Errorf(mdmd.EConflict, "the user already has a confirmed second factor")
		case err == nil:
			return dbErr(tx.table(ctx, "admin_totp").Where("user_id = ? AND confirmed_at IS NULL", userID).
				Updates(map[string]any{"secret_sealed": sealed, "created_at": tx.Now(), "last_step": 0}).Error, "TOTP factor")
		case mdmd.IsCode(err, mdmd.ENotFound):
			return dbErr(tx.table(ctx, "admin_totp").Create(&mdmd.AdminTOTP{UserID: userID, SecretSealed: sealed,
				CreatedAt: tx.Now()}).Error, "TOTP factor")
		default:
			return err
		}
	})
}

// UseTOTPStep accepts the code of time step step for the user: it
// succeeds only if no code of this or a later step was accepted before,
// so a code cannot be replayed (even on another replica). confirm also
// marks an enrollment as confirmed.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) (bool, error) {
	set := map[string]any{"last_step": step}
	if confirm {
		set["confirmed_at"] = s.Now()
	}
	q := s.table(ctx, "admin_totp").Where("user_id = ? AND last_step < ?", userID, step)
	if confirm {
		q = q.Where("confirmed_at IS NULL")
	} else {
		q = q.Where("confirmed_at IS NOT NULL")
	}
	res := q.Updates(set)
	return res.RowsAffected == 1, dbErr(res.Error, "TOTP factor")
}

// DeleteAdminTOTP removes the user's second factor (an administrator's
// reset); the user enrolls again at the next sign-in.
func (s *Store) DeleteAdminTOTP(ctx context.Context, userID string) error {
	return dbErr(s.table(ctx, "admin_totp").Where("user_id = ?", userID).Delete(&mdmd.AdminTOTP{}).Error, "TOTP factor")
}

type nameCursor struct {
	Name string `json:"n"`
	ID   string `json:"i"`
}

// ConsoleListDevices returns one page of the console's device list, each
// device with its compliance state, and the opaque cursor of the next
// page ("" on the last one). Every sort order is keyset-paged on an index
// that ends in id, so a page costs the same at any depth.
func (s *Store) ConsoleListDevices(ctx context.Context, f mdmd.ConsoleDeviceFilter) ([]mdmd.ConsoleDevice, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	q := s.consoleDeviceQuery(ctx, f).
		Select("devices.*, coalesce(device_compliance.state, ?) AS compliance_state", mdmd.NotEvaluated)
	if f.After != "" {
		switch f.Sort {
		case mdmd.SortNewest:
			q = q.Where("devices.id < ?", f.After)
		case mdmd.SortName:
			raw, err := base64.RawURLEncoding.DecodeString(f.After)
			var c nameCursor
			if err == nil {
				err = json.Unmarshal(raw, &c)
			}
			if err != nil {
				return nil, "", mdmd.FieldError("cursor", "invalid cursor")
			}
			q = q.Where("(devices.name > ? OR (devices.name = ? AND devices.id > ?))", c.Name, c.Name, c.ID)
		default:
			q = q.Where("devices.id > ?", f.After)
		}
	}
	switch f.Sort {
	case mdmd.SortNewest:
		q = q.Order("devices.id DESC")
	case mdmd.SortName:
		q = q.Order("devices.name").Order("devices.id")
	default:
		q = q.Order("devices.id")
	}
	limit := limitOf(f.Limit)
	var out []mdmd.ConsoleDevice
	if err := q.Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, "", dbErr(err, "devices")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = last.ID
		if f.Sort == mdmd.SortName {
			raw, _ := json.Marshal(nameCursor{Name: last.Name, ID: last.ID})
			next = base64.RawURLEncoding.EncodeToString(raw)
		}
	}
	return out, next, nil
}

// ConsoleCountDevices counts the devices the console's filter selects.
func (s *Store) ConsoleCountDevices(ctx context.Context, f mdmd.ConsoleDeviceFilter) (int64, error) {
	f.Limit = 0
	if err := f.Validate(); err != nil {
		return 0, err
	}
	var n int64
	err := s.consoleDeviceQuery(ctx, f).Count(&n).Error
	return n, dbErr(err, "devices")
}

func (s *Store) consoleDeviceQuery(ctx context.Context, f mdmd.ConsoleDeviceFilter) *gorm.DB {
	q := s.deviceQuery(ctx, f.DeviceFilter)
	switch f.ComplianceState {
	case "":
		q = q.Joins("LEFT JOIN device_compliance ON device_compliance.device_id = devices.id")
	case mdmd.NotEvaluated:
		q = q.Joins("LEFT JOIN device_compliance ON device_compliance.device_id = devices.id").
			Where("(device_compliance.state IS NULL OR device_compliance.state = ?)", mdmd.NotEvaluated)
	default:
		q = q.Joins("JOIN device_compliance ON device_compliance.device_id = devices.id").
			Where("device_compliance.state = ?", f.ComplianceState)
	}
	return q
}

// ConsoleDashboard gathers the console's front page.
func (s *Store) ConsoleDashboard(ctx context.Context, recent int) (*mdmd.Dashboard, error) {
	d := &mdmd.Dashboard{}
	db := s.db.WithContext(ctx)
	if err := db.Raw(`SELECT platform AS label, count(*) AS n FROM devices WHERE enrollment_state IN ('pending', 'enrolled')
GROUP BY platform ORDER BY platform`).Scan(&d.ByPlatform).Error; err != nil {
		return nil, dbErr(err, "devices")
	}
	if err := db.Raw(`SELECT coalesce(c.state, 'not_evaluated') AS label, count(*) AS n
FROM devices d LEFT JOIN device_compliance c ON c.device_id = d.id
WHERE d.enrollment_state = 'enrolled' GROUP BY coalesce(c.state, 'not_evaluated') ORDER BY 1`).Scan(&d.ByCompliance).Error; err != nil {
		return nil, dbErr(err, "compliance")
	}
	cut := s.Now().Add(-mdmd.StaleAfter)
	stale := s.table(ctx, "devices").Where("enrollment_state = 'enrolled' AND (last_seen_at IS NULL OR last_seen_at < ?)", cut)
	if err := stale.Count(&d.StaleCount).Error; err != nil {
		return nil, dbErr(err, "devices")
	}
	if err := s.table(ctx, "devices").Where("enrollment_state = 'enrolled' AND (last_seen_at IS NULL OR last_seen_at < ?)", cut).
		Order("last_seen_at").Order("id").Limit(10).Find(&d.Stale).Error; err != nil {
		return nil, dbErr(err, "devices")
	}
	evs, _, err := s.ListAudit(ctx, mdmd.AuditFilter{Limit: recent})
	if err != nil {
		return nil, err
	}
	d.Recent = evs
	return d, nil
}

// DeviceTimeline merges a device's history, newest first: audit entries
// about it, its compliance changes and its commands.
func (s *Store) DeviceTimeline(ctx context.Context, deviceID string, limit int) ([]mdmd.TimelineEntry, error) {
	limit = limitOf(limit)
	var out []mdmd.TimelineEntry
	audit, _, err := s.ListAudit(ctx, mdmd.AuditFilter{TargetID: deviceID, Limit: limit})
	if err != nil {
		return nil, err
	}
	for _, e := range audit {
		detail := e.Actor
		if e.Reason != "" {
			detail += ": " + e.Reason
		}
		out = append(out, mdmd.TimelineEntry{At: e.At, Kind: "audit", Title: e.Action + " (" + e.Outcome + ")", Detail: detail})
	}
	var changes []mdmd.ComplianceChange
	if err := s.table(ctx, "compliance_changes").Where("device_id = ?", deviceID).Order("seq DESC").Limit(limit).
		Find(&changes).Error; err != nil {
		return nil, dbErr(err, "compliance changes")
	}
	for _, c := range changes {
		title := "compliance " + c.FromState + " → " + c.ToState
		if c.FromState == "" {
			title = "compliance first evaluated: " + c.ToState
		}
		out = append(out, mdmd.TimelineEntry{At: c.At, Kind: "compliance", Title: title, Detail: c.Reason})
	}
	var cmds []mdmd.Command
	if err := s.table(ctx, "commands").Where("device_id = ?", deviceID).Order("id DESC").Limit(limit).
		Find(&cmds).Error; err != nil {
		return nil, dbErr(err, "commands")
	}
	for _, c := range cmds {
		out = append(out, mdmd.TimelineEntry{At: c.CreatedAt, Kind: "command", Title: c.RequestType + " queued",
			Detail: "by " + c.CreatedBy})
	}
	sortTimeline(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func sortTimeline(es []mdmd.TimelineEntry) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].At.After(es[j].At) })
}

// DeleteUserConsoleSessions ends every console session of a user (whose
// role changed, or who was disabled), and returns how many it ended.
func (s *Store) DeleteUserConsoleSessions(ctx context.Context, userID string) (int64, error) {
	res := s.table(ctx, "console_sessions").Where("user_id = ?", userID).Delete(&mdmd.ConsoleSession{})
	return res.RowsAffected, dbErr(res.Error, "console sessions")
}
