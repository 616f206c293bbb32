package storage

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// complianceFeedLock is the PostgreSQL advisory lock that writers of the
// change feed hold until commit, so that seq values commit in order.
const complianceFeedLock = 0x6d646d64636f6d70

// RecordCompliance stores a device's evaluated compliance state. When the
// state differs from the stored one (or none was stored) it also appends
// to the change feed, in the same transaction, and returns the previous
// state with changed true. An unchanged state only refreshes the stored
// evaluation.
func (s *Store) RecordCompliance(ctx context.Context, c *mdmd.DeviceCompliance, cause string) (prev string, changed bool, err error) {
	switch {
	case c.DeviceID == "":
		return "", false, mdmd.FieldError("device_id", "required")
	case !slices.Contains(mdmd.ComplianceStates, c.State):
		return "", false, mdmd.FieldError("state", "unknown compliance state %q", c.State)
	case cause == "" || len(cause) > 200:
		return "", false, mdmd.FieldError("cause", "must be 1 to 200 characters")
	case len(c.Rules) > 0 && !json.Valid(c.Rules):
		return "", false, mdmd.FieldError("rules", "not JSON")
	}
	row := *c
	if len(row.Rules) == 0 {
		row.Rules = mdmd.RawJSON("[]")
	}
	err = s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		row.EvaluatedAt = utc(row.EvaluatedAt)
		if row.EvaluatedAt.IsZero() {
			row.EvaluatedAt = now
		}
		row.FailingSince, row.GraceEndsAt = utcPtr(row.FailingSince), utcPtr(row.GraceEndsAt)
		// Writers for one device take turns: on PostgreSQL by locking the
		// device's row (a device with no state yet has no state row to
		// lock); SQLite has one writer at a time.
		lock := ""
		if tx.dialect == migrations.Postgres {
			lock = " FOR NO KEY UPDATE"
		}
		var found []string
		if err := tx.db.WithContext(ctx).Raw("SELECT id FROM devices WHERE id = ?"+lock, row.DeviceID).Scan(&found).Error; err != nil {
			return dbErr(err, "device")
		}
		if len(found) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no device %s", row.DeviceID)
		}
		var cur mdmd.DeviceCompliance
		switch err := tx.table(ctx, "device_compliance").Where("device_id = ?", row.DeviceID).Take(&cur).Error; {
		case err == nil:
			prev = cur.State
			changed = cur.State != row.State
			row.ChangedAt = cur.ChangedAt
		case errors.Is(err, gorm.ErrRecordNotFound):
			changed = true
		default:
			return dbErr(err, "compliance")
		}
		if changed {
			row.ChangedAt = now
		}
		err := tx.table(ctx, "device_compliance").Clauses(clause.OnConflict{UpdateAll: true}).Create(&row).Error
		if err != nil {
			return dbErr(err, "compliance")
		}
		if !changed {
			return nil
		}
		if tx.dialect == migrations.Postgres {
			if err := tx.db.WithContext(ctx).Exec("SELECT pg_advisory_xact_lock(?)", complianceFeedLock).Error; err != nil {
				return dbErr(err, "compliance feed")
			}
		}
		ch := mdmd.ComplianceChange{DeviceID: row.DeviceID, FromState: prev, ToState: row.State, PolicyID: row.PolicyID,
			Reason: row.Reason, Rules: row.Rules, Cause: cause, At: now}
		return dbErr(tx.table(ctx, "compliance_changes").Create(&ch).Error, "compliance feed")
	})
	if err != nil {
		return "", false, err
	}
	*c = row
	return prev, changed, nil
}

// GetCompliance returns a device's stored compliance state.
func (s *Store) GetCompliance(ctx context.Context, deviceID string) (*mdmd.DeviceCompliance, error) {
	var c mdmd.DeviceCompliance
	err := s.table(ctx, "device_compliance").Where("device_id = ?", deviceID).Take(&c).Error
	return &c, dbErr(err, "compliance state")
}

// ListComplianceChanges returns up to limit changes after the cursor seq,
// oldest first. Resuming with the last seq seen misses nothing.
func (s *Store) ListComplianceChanges(ctx context.Context, after int64, limit int) ([]mdmd.ComplianceChange, error) {
	if limit <= 0 || limit > mdmd.MaxPageSize {
		limit = mdmd.MaxPageSize
	}
	var out []mdmd.ComplianceChange
	err := s.table(ctx, "compliance_changes").Where("seq > ?", after).Order("seq").Limit(limit).Find(&out).Error
	return out, dbErr(err, "compliance feed")
}
