package storage

import (
	"context"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

// CreateDevice stores a new device. It assigns an ID when none is set. A
// UDID or AMAPI name that is already taken is a conflict.
func (s *Store) CreateDevice(ctx context.Context, d *mdmd.Device) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.ID == "" {
		d.ID = newID()
	}
	now := s.Now()
	d.CreatedAt, d.UpdatedAt = now, now
	d.LastSeenAt, d.EnrolledAt = utcPtr(d.LastSeenAt), utcPtr(d.EnrolledAt)
	return dbErr(s.table(ctx, "devices").Create(d).Error, "device")
}

// GetDevice returns the device with the given ID.
func (s *Store) GetDevice(ctx context.Context, id string) (*mdmd.Device, error) {
	var d mdmd.Device
	err := s.table(ctx, "devices").Where("id = ?", id).Take(&d).Error
	return &d, dbErr(err, "device")
}

// GetDeviceByUDID returns the iOS device with the given UDID.
func (s *Store) GetDeviceByUDID(ctx context.Context, udid string) (*mdmd.Device, error) {
	var d mdmd.Device
	err := s.table(ctx, "devices").Where("udid = ?", udid).Take(&d).Error
	return &d, dbErr(err, "device")
}

// GetDeviceByAMAPIName returns the Android device with the given AMAPI name.
func (s *Store) GetDeviceByAMAPIName(ctx context.Context, name string) (*mdmd.Device, error) {
	var d mdmd.Device
	err := s.table(ctx, "devices").Where("amapi_name = ?", name).Take(&d).Error
	return &d, dbErr(err, "device")
}

// UpdateDevice applies the set fields of u and returns the device as stored.
func (s *Store) UpdateDevice(ctx context.Context, id string, u mdmd.DeviceUpdate) (*mdmd.Device, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	set := map[string]any{"updated_at": s.Now()}
	put := func(col string, v *string) {
		if v != nil {
			set[col] = *v
		}
	}
	put("name", u.Name)
	put("serial_number", u.SerialNumber)
	put("model", u.Model)
	put("os_version", u.OSVersion)
	put("owner_user", u.OwnerUser)
	if u.Ownership != nil {
		set["ownership"] = string(*u.Ownership)
	}
	if u.EnrollmentState != nil {
		set["enrollment_state"] = string(*u.EnrollmentState)
	}
	if u.EnrolledAt != nil {
		set["enrolled_at"] = utc(*u.EnrolledAt)
	}
	err := s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "devices").Where("id = ?", id).Updates(set)
		if res.Error != nil {
			return dbErr(res.Error, "device")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "device not found")
		}
		if u.EnrollmentState != nil || u.OSVersion != nil {
			return tx.markDirty(ctx, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.GetDevice(ctx, id)
}

// DeleteDevice removes the record of a device that is no longer managed
// (unenrolled or wiped), with its commands and group memberships. A device
// that is pending or enrolled is a conflict: it must leave management
// first. The check and the delete are one statement, so a device that
// enrolls meanwhile is never removed.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	return s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "devices").Where("id = ? AND enrollment_state IN ?", id,
			[]string{string(mdmd.EnrollmentUnenrolled), string(mdmd.EnrollmentWiped)}).Delete(&mdmd.Device{})
		if res.Error != nil {
			return dbErr(res.Error, "device")
		}
		if res.RowsAffected == 0 {
			d, err := tx.GetDevice(ctx, id)
			if err != nil {
				return err
			}
			return mdmd.Errorf(mdmd.EConflict, "device is still %s: unenroll or wipe it before deleting its record", d.EnrollmentState)
		}
		// Assignments name their target without a foreign key.
		return dbErr(tx.table(ctx, "profile_assignments").Where("target_type = ? AND target_id = ?", mdmd.TargetDevice, id).
			Delete(&mdmd.ProfileAssignment{}).Error, "assignments")
	})
}

// ListDevices returns one page of devices in ID order (IDs are time
// ordered, so this is enrollment order) and the cursor of the next page,
// "" on the last one.
func (s *Store) ListDevices(ctx context.Context, f mdmd.DeviceFilter) ([]mdmd.Device, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	q := s.deviceQuery(ctx, f)
	if f.After != "" {
		q = q.Where("id > ?", f.After)
	}
	limit := limitOf(f.Limit)
	var out []mdmd.Device
	if err := q.Order("id").Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, "", dbErr(err, "devices")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// CountDevices counts the devices a filter selects (After and Limit are ignored).
func (s *Store) CountDevices(ctx context.Context, f mdmd.DeviceFilter) (int64, error) {
	f.Limit = 0
	if err := f.Validate(); err != nil {
		return 0, err
	}
	var n int64
	err := s.deviceQuery(ctx, f).Count(&n).Error
	return n, dbErr(err, "devices")
}

func (s *Store) deviceQuery(ctx context.Context, f mdmd.DeviceFilter) *gorm.DB {
	q := s.table(ctx, "devices")
	if f.Platform != "" {
		q = q.Where("platform = ?", string(f.Platform))
	}
	if f.EnrollmentState != "" {
		q = q.Where("enrollment_state = ?", string(f.EnrollmentState))
	}
	if f.Ownership != "" {
		q = q.Where("ownership = ?", string(f.Ownership))
	}
	if f.OwnerUser != "" {
		q = q.Where("owner_user = ?", f.OwnerUser)
	}
	if f.GroupID != "" {
		q = q.Where("id IN (SELECT device_id FROM device_groups WHERE group_id = ?)", f.GroupID)
	}
	if qs := strings.TrimSpace(f.Query); qs != "" {
		like := "%" + escapeLike(strings.ToLower(qs)) + "%"
		q = q.Where(`(lower(name) LIKE ? ESCAPE '\' OR lower(serial_number) LIKE ? ESCAPE '\' OR lower(coalesce(udid, '')) LIKE ? ESCAPE '\' OR lower(model) LIKE ? ESCAPE '\' OR lower(owner_user) LIKE ? ESCAPE '\')`,
			like, like, like, like, like)
	}
	return q
}

// MarkDevicesSeen records that the devices were in contact at the given
// time, in one statement for a whole batch. A time older than the stored
// one is ignored, so batches may arrive out of order.
func (s *Store) MarkDevicesSeen(ctx context.Context, ids []string, at time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	at = utc(at)
	res := s.table(ctx, "devices").
		Where("id IN ? AND (last_seen_at IS NULL OR last_seen_at < ?)", ids, at).
		Update("last_seen_at", at)
	if res.Error != nil || res.RowsAffected == 0 {
		return res.RowsAffected, dbErr(res.Error, "devices")
	}
	// Contact can end a failing check-in validity rule: devices that are
	// failing are evaluated again. Compliant ones (most) cost nothing.
	err := s.db.WithContext(ctx).Exec(`INSERT INTO compliance_dirty (device_id, version, marked_at)
SELECT device_id, 1, ? FROM device_compliance WHERE device_id IN ? AND state IN ('noncompliant', 'in_grace')
ON CONFLICT (device_id) DO UPDATE SET version = compliance_dirty.version + 1`, s.Now(), ids).Error
	return res.RowsAffected, dbErr(err, "compliance mark")
}

// CreateGroup stores a new group; a taken name is a conflict.
func (s *Store) CreateGroup(ctx context.Context, g *mdmd.Group) error {
	if err := g.Validate(); err != nil {
		return err
	}
	if g.ID == "" {
		g.ID = newID()
	}
	now := s.Now()
	g.CreatedAt, g.UpdatedAt = now, now
	return dbErr(s.table(ctx, "groups").Create(g).Error, "group")
}

// GetGroup returns the group with the given ID.
func (s *Store) GetGroup(ctx context.Context, id string) (*mdmd.Group, error) {
	var g mdmd.Group
	err := s.table(ctx, "groups").Where("id = ?", id).Take(&g).Error
	return &g, dbErr(err, "group")
}

// ListGroups returns every group by name.
func (s *Store) ListGroups(ctx context.Context) ([]mdmd.Group, error) {
	var out []mdmd.Group
	err := s.table(ctx, "groups").Order("name").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "groups")
}

// UpdateGroup renames or redescribes a group.
func (s *Store) UpdateGroup(ctx context.Context, id string, name, description *string) (*mdmd.Group, error) {
	g, err := s.GetGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	if name != nil {
		g.Name = *name
	}
	if description != nil {
		g.Description = *description
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	// Write only what was supplied, so concurrent edits of different
	// fields do not undo each other.
	set := map[string]any{"updated_at": s.Now()}
	if name != nil {
		set["name"] = *name
	}
	if description != nil {
		set["description"] = *description
	}
	res := s.table(ctx, "groups").Where("id = ?", id).Updates(set)
	if res.Error != nil {
		return nil, dbErr(res.Error, "group")
	}
	if res.RowsAffected == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "group not found")
	}
	return s.GetGroup(ctx, id)
}

// DeleteGroup removes a group, its memberships and the profile
// assignments that targeted it (not its devices).
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	return s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "groups").Where("id = ?", id).Delete(&mdmd.Group{})
		if res.Error != nil {
			return dbErr(res.Error, "group")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "group not found")
		}
		return dbErr(tx.table(ctx, "profile_assignments").Where("target_type = ? AND target_id = ?", mdmd.TargetGroup, id).
			Delete(&mdmd.ProfileAssignment{}).Error, "assignments")
	})
}

type membership struct {
	GroupID  string `gorm:"column:group_id"`
	DeviceID string `gorm:"column:device_id"`
}

// AddGroupMembers puts devices in a group; members already in it stay.
// An unknown group or device fails the whole call and adds nothing.
func (s *Store) AddGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	rows := make([]membership, 0, len(deviceIDs))
	for _, id := range deviceIDs {
		rows = append(rows, membership{GroupID: groupID, DeviceID: id})
	}
	return s.Tx(ctx, func(tx *Store) error {
		err := tx.table(ctx, "device_groups").Clauses(clause.OnConflict{DoNothing: true}).Create(&rows).Error
		if err != nil {
			return dbErr(err, "group member")
		}
		// A group can bring a compliance policy.
		return tx.markDirty(ctx, slices.Compact(slices.Sorted(slices.Values(deviceIDs)))...)
	})
}

// RemoveGroupMembers takes devices out of a group.
func (s *Store) RemoveGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	return s.Tx(ctx, func(tx *Store) error {
		var gone []string
		if err := tx.table(ctx, "device_groups").Where("group_id = ? AND device_id IN ?", groupID, deviceIDs).
			Pluck("device_id", &gone).Error; err != nil {
			return dbErr(err, "group member")
		}
		err := tx.table(ctx, "device_groups").Where("group_id = ? AND device_id IN ?", groupID, deviceIDs).
			Delete(&membership{}).Error
		if err != nil {
			return dbErr(err, "group member")
		}
		return tx.markDirty(ctx, gone...)
	})
}

// DeviceGroups returns the groups a device is in, by name.
func (s *Store) DeviceGroups(ctx context.Context, deviceID string) ([]mdmd.Group, error) {
	var out []mdmd.Group
	err := s.table(ctx, "groups").
		Where("id IN (SELECT group_id FROM device_groups WHERE device_id = ?)", deviceID).
		Order("name").Find(&out).Error
	return out, dbErr(err, "groups")
}
