package storage

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// CreateAndroidToken stores an enrollment token mdmd created in AMAPI.
func (s *Store) CreateAndroidToken(ctx context.Context, t *mdmd.AndroidToken) error {
	if t.Kind != mdmd.AndroidWorkProfile && t.Kind != mdmd.AndroidFullyManaged {
		return mdmd.FieldError("kind", "must be work_profile or fully_managed, got %q", t.Kind)
	}
	if t.Name == "" || len(t.ValueSealed) == 0 {
		return mdmd.FieldError("token", "name and sealed value are required")
	}
	if t.ID == "" {
		t.ID = newID()
	}
	t.CreatedAt, t.ExpiresAt = s.Now(), utc(t.ExpiresAt)
	return dbErr(s.table(ctx, "android_tokens").Create(t).Error, "enrollment token")
}

// GetAndroidToken returns a token by mdmd's ID.
func (s *Store) GetAndroidToken(ctx context.Context, id string) (*mdmd.AndroidToken, error) {
	var t mdmd.AndroidToken
	err := s.table(ctx, "android_tokens").Where("id = ?", id).Take(&t).Error
	return &t, dbErr(err, "enrollment token")
}

// ListAndroidTokens returns the tokens, newest first.
func (s *Store) ListAndroidTokens(ctx context.Context) ([]mdmd.AndroidToken, error) {
	var out []mdmd.AndroidToken
	err := s.table(ctx, "android_tokens").Order("id DESC").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "enrollment tokens")
}

// RevokeAndroidToken marks a token revoked.
func (s *Store) RevokeAndroidToken(ctx context.Context, id string) (*mdmd.AndroidToken, error) {
	if err := s.table(ctx, "android_tokens").Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", s.Now()).Error; err != nil {
		return nil, dbErr(err, "enrollment token")
	}
	return s.GetAndroidToken(ctx, id)
}

// GetAndroidDevice returns the Android side of a device.
func (s *Store) GetAndroidDevice(ctx context.Context, deviceID string) (*mdmd.AndroidDevice, error) {
	var d mdmd.AndroidDevice
	err := s.table(ctx, "android_devices").Where("device_id = ?", deviceID).Take(&d).Error
	return &d, dbErr(err, "Android device")
}

type pubsubMessage struct {
	MessageID  string    `gorm:"column:message_id;primaryKey"`
	ReceivedAt time.Time `gorm:"column:received_at"`
}

var amapiOwnership = map[string]mdmd.Ownership{"COMPANY_OWNED": mdmd.OwnershipCorporate, "PERSONALLY_OWNED": mdmd.OwnershipPersonal}

// ApplyAndroidUpdate applies one AMAPI notification in one transaction,
// so that it is durable before Pub/Sub is told so:
//   - a message ID seen before is a duplicate and changes nothing;
//   - a report older than the stored one (by publish time) is stale: it
//     is recorded as received but changes nothing;
//   - ENROLLMENT creates the device (owner from its enrollment token) or
//     links it again; a report for a device mdmd never enrolled is not
//     found, and not recorded, so Pub/Sub delivers it again (the
//     ENROLLMENT may still be on its way);
//   - an appliedState of DELETED marks the device unenrolled.
func (s *Store) ApplyAndroidUpdate(ctx context.Context, u mdmd.AndroidUpdate) (result, deviceID string, err error) {
	if u.MessageID == "" || u.State.AMAPIName == "" {
		return "", "", mdmd.FieldError("message", "a message ID and a device name are required")
	}
	err = s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		publish := utc(u.PublishTime)
		ownership := amapiOwnership[u.State.AMAPIOwnership]
		if ownership == "" {
			ownership = mdmd.OwnershipCorporate
		}
		state := mdmd.EnrollmentEnrolled
		if u.State.AppliedState == "DELETED" {
			state = mdmd.EnrollmentUnenrolled
		}
		// The statements are written out rather than built by gorm: this
		// is the hot path of STATUS_REPORT ingest.
		androidSQL := `UPDATE android_devices SET management_mode = ?, amapi_ownership = ?, applied_state = ?,
    policy_name = ?, applied_policy_version = ?, policy_compliant = ?, non_compliance = ?, last_status_report = ?,
    last_publish_time = ?, updated_at = ?
WHERE amapi_name = ? AND last_publish_time <= ?`
		androidArgs := []any{u.State.ManagementMode, u.State.AMAPIOwnership, u.State.AppliedState, u.State.PolicyName,
			u.State.AppliedPolicyVersion, u.State.PolicyCompliant, u.State.NonCompliance, utcPtr(u.State.LastStatusReport),
			publish, now, u.State.AMAPIName, publish}
		stateSQL, stateArgs := "?", []any{string(state)}
		switch {
		case state == mdmd.EnrollmentUnenrolled:
			// A full wipe mdmd sent marks the device wiped, before or after
			// this report: keep that, in the same statement.
			stateSQL, stateArgs = "CASE WHEN enrollment_state = ? THEN enrollment_state ELSE ? END",
				[]any{string(mdmd.EnrollmentWiped), string(state)}
		case !u.Enrollment:
			// Only an ENROLLMENT brings a wiped or unenrolled device back; a
			// late report from before the wipe does not.
			stateSQL, stateArgs = "CASE WHEN enrollment_state IN (?, ?) THEN enrollment_state ELSE ? END",
				[]any{string(mdmd.EnrollmentWiped), string(mdmd.EnrollmentUnenrolled), string(state)}
		}
		devicesSQL := `UPDATE devices SET enrollment_state = ` + stateSQL + `, ownership = ?, updated_at = ?, last_seen_at = ?,
    model = COALESCE(NULLIF(?, ''), model), serial_number = COALESCE(NULLIF(?, ''), serial_number),
    os_version = COALESCE(NULLIF(?, ''), os_version)`
		devicesArgs := append(stateArgs, string(ownership), now, now, u.Model, u.SerialNumber, u.OSVersion)

		// The common case is a new report for a known device. On
		// PostgreSQL it is one statement: record the message, update the
		// Android row if this report is newer, then the device row.
		devicesDone := false
		if tx.dialect == migrations.Postgres {
			var row struct {
				Fresh    bool
				DeviceID *string
			}
			args := append([]any{u.MessageID, now}, androidArgs...)
			args = append(args, devicesArgs...)
			err := tx.db.WithContext(ctx).Raw(`WITH msg AS (
    INSERT INTO pubsub_messages (message_id, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING message_id
), ad AS (
    `+androidSQL+` AND EXISTS (SELECT 1 FROM msg) RETURNING device_id
), d AS (
    `+devicesSQL+` FROM ad WHERE devices.id = ad.device_id RETURNING devices.id
)
SELECT EXISTS (SELECT 1 FROM msg) AS fresh, (SELECT id FROM d) AS device_id`, args...).Scan(&row).Error
			if err != nil {
				return dbErr(err, "Android device")
			}
			if !row.Fresh {
				result = mdmd.UpdateDuplicate
				return nil
			}
			if row.DeviceID != nil {
				deviceID, devicesDone = *row.DeviceID, true
			}
		} else {
			res := tx.table(ctx, "pubsub_messages").Clauses(clause.OnConflict{DoNothing: true}).
				Create(&pubsubMessage{MessageID: u.MessageID, ReceivedAt: now})
			if res.Error != nil {
				return dbErr(res.Error, "message")
			}
			if res.RowsAffected == 0 {
				result = mdmd.UpdateDuplicate
				return nil
			}
			var ids []string
			if err := tx.db.WithContext(ctx).Raw(androidSQL+" RETURNING device_id", androidArgs...).Scan(&ids).Error; err != nil {
				return dbErr(err, "Android device")
			}
			if len(ids) == 1 {
				deviceID = ids[0]
			}
		}
		if deviceID == "" {
			var cur mdmd.AndroidDevice
			err := tx.table(ctx, "android_devices").Where("amapi_name = ?", u.State.AMAPIName).Take(&cur).Error
			switch {
			case err == nil:
				result, deviceID = mdmd.UpdateStale, cur.DeviceID
				return nil
			case !errors.Is(err, gorm.ErrRecordNotFound):
				return dbErr(err, "Android device")
			case !u.Enrollment:
				return mdmd.Errorf(mdmd.ENotFound, "no enrolled device %s", u.State.AMAPIName)
			}
			owner := ""
			if u.State.TokenID != "" {
				if t, err := tx.GetAndroidToken(ctx, u.State.TokenID); err == nil {
					owner = t.OwnerUser
				}
			}
			name := u.State.AMAPIName
			d := &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: &name, Name: u.Model, SerialNumber: u.SerialNumber,
				Model: u.Model, OSVersion: u.OSVersion, Ownership: ownership, EnrollmentState: state, OwnerUser: owner,
				EnrolledAt: &now, LastSeenAt: &now}
			if err := tx.CreateDevice(ctx, d); err != nil {
				return err
			}
			deviceID = d.ID
			row := u.State
			row.DeviceID, row.LastPublishTime, row.UpdatedAt = deviceID, publish, now
			row.LastStatusReport = utcPtr(row.LastStatusReport)
			if err := tx.table(ctx, "android_devices").Create(&row).Error; err != nil {
				return dbErr(err, "Android device")
			}
		}
		if !devicesDone {
			if err := tx.db.WithContext(ctx).Exec(devicesSQL+" WHERE id = ?", append(devicesArgs, deviceID)...).Error; err != nil {
				return dbErr(err, "device")
			}
		}
		if u.Posture != nil {
			p := *u.Posture
			p.DeviceID = deviceID
			// The device's OS version was written just above.
			if err := tx.upsertPosture(ctx, &p, false); err != nil {
				return err
			}
		} else if err := tx.markDirty(ctx, deviceID); err != nil {
			return err
		}
		result = mdmd.UpdateApplied
		return nil
	})
	return result, deviceID, err
}

// PrunePubsubMessages forgets message IDs received before the given time
// (Pub/Sub redelivers for at most 7 days).
func (s *Store) PrunePubsubMessages(ctx context.Context, before time.Time) (int64, error) {
	res := s.table(ctx, "pubsub_messages").Where("received_at < ?", utc(before)).Delete(&pubsubMessage{})
	return res.RowsAffected, dbErr(res.Error, "messages")
}

// PutAndroidPolicy stores a policy as saved to AMAPI.
func (s *Store) PutAndroidPolicy(ctx context.Context, p *mdmd.AndroidPolicy) error {
	p.UpdatedAt = s.Now()
	err := s.table(ctx, "android_policies").Clauses(clause.OnConflict{UpdateAll: true}).Create(p).Error
	return dbErr(err, "policy")
}

// GetAndroidPolicy returns a policy by ID.
func (s *Store) GetAndroidPolicy(ctx context.Context, id string) (*mdmd.AndroidPolicy, error) {
	var p mdmd.AndroidPolicy
	err := s.table(ctx, "android_policies").Where("id = ?", id).Take(&p).Error
	return &p, dbErr(err, "policy")
}

// GetAndroidPolicyByName returns a policy by its AMAPI name.
func (s *Store) GetAndroidPolicyByName(ctx context.Context, name string) (*mdmd.AndroidPolicy, error) {
	var p mdmd.AndroidPolicy
	err := s.table(ctx, "android_policies").Where("amapi_name = ?", name).Take(&p).Error
	return &p, dbErr(err, "policy")
}

// ListAndroidPolicies returns every policy by ID.
func (s *Store) ListAndroidPolicies(ctx context.Context) ([]mdmd.AndroidPolicy, error) {
	var out []mdmd.AndroidPolicy
	err := s.table(ctx, "android_policies").Order("id").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "policies")
}
