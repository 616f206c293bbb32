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

var threatLevels = []string{"secured", "low", "medium", "high"}

// ReportThreat stores an MTD partner's verdict about a device, refreshes
// its heartbeat and marks the device for evaluation, in one transaction.
// A new level is logged as a threat-level event. It returns the previous
// level ("" if none). An unknown level or device stores nothing. A
// device's verdict belongs to the partner that first reported it
// (ReportedBy, the partner's token ID): another partner's report is a
// conflict until an admin releases the device (DeleteThreat).
func (s *Store) ReportThreat(ctx context.Context, t *mdmd.DeviceThreat) (prev string, err error) {
	switch {
	case !slices.Contains(threatLevels, t.Level):
		return "", mdmd.FieldError("level", "must be secured, low, medium or high, got %q", t.Level)
	case t.Source == "" || len(t.Source) > 200:
		return "", mdmd.FieldError("source", "must be 1 to 200 characters")
	case len(t.Details) > 0 && (!json.Valid(t.Details) || t.Details[0] != '{'):
		return "", mdmd.FieldError("details", "must be a JSON object")
	case len(t.Details) > 16<<10:
		return "", mdmd.FieldError("details", "must be at most 16 KiB")
	}
	row := *t
	if len(row.Details) == 0 {
		row.Details = mdmd.RawJSON("{}")
	}
	err = s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		row.ReportedAt, row.HeartbeatAt = now, now
		lock := ""
		if tx.dialect == migrations.Postgres {
			lock = " FOR NO KEY UPDATE"
		}
		var devs []mdmd.Device
		if err := tx.db.WithContext(ctx).Raw("SELECT * FROM devices WHERE id = ?"+lock, row.DeviceID).Scan(&devs).Error; err != nil {
			return dbErr(err, "device")
		}
		if len(devs) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no device %s", row.DeviceID)
		}
		var cur mdmd.DeviceThreat
		switch err := tx.table(ctx, "device_threats").Where("device_id = ?", row.DeviceID).Take(&cur).Error; {
		case err == nil:
			if cur.ReportedBy != row.ReportedBy {
				return mdmd.Errorf(mdmd.EConflict, "another partner reports this device's threat level; an admin must release it first")
			}
			prev = cur.Level
		case !errors.Is(err, gorm.ErrRecordNotFound):
			return dbErr(err, "threat")
		}
		if err := tx.table(ctx, "device_threats").Clauses(clause.OnConflict{UpdateAll: true}).Create(&row).Error; err != nil {
			return dbErr(err, "threat")
		}
		if err := tx.markDirty(ctx, row.DeviceID); err != nil {
			return err
		}
		if prev == row.Level {
			return nil
		}
		return tx.AppendEvent(ctx, mdmd.EventThreatChanged, row.DeviceID, mdmd.ThreatChangedData{
			EventDevice: mdmd.NewEventDevice(&devs[0]), PreviousLevel: prev, CurrentLevel: row.Level,
			Source: row.Source, Details: row.Details, ReportedAt: now})
	})
	if err != nil {
		return "", err
	}
	*t = row
	return prev, nil
}

// ThreatHeartbeat records that an MTD partner (by its token ID) still
// vouches for its last verdicts about the devices. Every device must have
// one from this partner: otherwise nothing is stored and the error names
// the first device without.
func (s *Store) ThreatHeartbeat(ctx context.Context, reporter string, deviceIDs []string) error {
	ids := slices.Compact(slices.Sorted(slices.Values(deviceIDs)))
	if len(ids) == 0 || len(ids) > mdmd.MaxPageSize {
		return mdmd.FieldError("device_ids", "must hold 1 to %d devices", mdmd.MaxPageSize)
	}
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		var have []string
		if err := tx.table(ctx, "device_threats").Where("device_id IN ? AND reported_by = ?", ids, reporter).Order("device_id").Pluck("device_id", &have).Error; err != nil {
			return dbErr(err, "threat")
		}
		for i, id := range ids {
			if i >= len(have) || have[i] != id {
				return mdmd.Errorf(mdmd.ENotFound, "you reported no threat level for device %s", id)
			}
		}
		if err := tx.table(ctx, "device_threats").Where("device_id IN ?", ids).Update("heartbeat_at", now).Error; err != nil {
			return dbErr(err, "threat")
		}
		// Fresh data can end a failing stale-data rule; compliant devices
		// (most) are not evaluated again for a heartbeat.
		err := tx.db.WithContext(ctx).Exec(`INSERT INTO compliance_dirty (device_id, version, marked_at)
SELECT device_id, 1, ? FROM device_compliance WHERE device_id IN ? AND state <> 'compliant'
ON CONFLICT (device_id) DO UPDATE SET version = compliance_dirty.version + 1`, now, ids).Error
		return dbErr(err, "compliance mark")
	})
}

// GetThreat returns the latest MTD verdict about a device.
func (s *Store) GetThreat(ctx context.Context, deviceID string) (*mdmd.DeviceThreat, error) {
	var t mdmd.DeviceThreat
	err := s.table(ctx, "device_threats").Where("device_id = ?", deviceID).Take(&t).Error
	return &t, dbErr(err, "threat")
}

// DeleteThreat forgets a device's MTD verdict (an admin releasing it from
// a partner) and marks the device for evaluation.
func (s *Store) DeleteThreat(ctx context.Context, deviceID string) error {
	return s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "device_threats").Where("device_id = ?", deviceID).Delete(&mdmd.DeviceThreat{})
		if res.Error != nil {
			return dbErr(res.Error, "threat")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no threat level is stored for device %s", deviceID)
		}
		return tx.markDirty(ctx, deviceID)
	})
}
