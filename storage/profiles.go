package storage

import (
	"context"
	"errors"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

// CreateProfile stores a new profile; a taken identifier is a conflict.
func (s *Store) CreateProfile(ctx context.Context, p *mdmd.Profile) error {
	if p.Name == "" || len(p.Name) > 200 {
		return mdmd.FieldError("name", "must be 1 to 200 characters")
	}
	if !p.Kind.Valid() {
		return mdmd.FieldError("kind", "unknown profile kind %q", p.Kind)
	}
	if p.Identifier == "" || len(p.Payload) == 0 {
		return mdmd.FieldError("payload", "a profile needs an identifier and a payload")
	}
	if p.ID == "" {
		p.ID = newID()
	}
	now := s.Now()
	p.Platform, p.Version, p.CreatedAt, p.UpdatedAt = mdmd.PlatformIOS, 1, now, now
	return dbErr(s.table(ctx, "profiles").Create(p).Error, "profile")
}

// GetProfile returns the profile with the given ID.
func (s *Store) GetProfile(ctx context.Context, id string) (*mdmd.Profile, error) {
	var p mdmd.Profile
	err := s.table(ctx, "profiles").Where("id = ?", id).Take(&p).Error
	return &p, dbErr(err, "profile")
}

// ListProfiles returns every profile by name.
func (s *Store) ListProfiles(ctx context.Context) ([]mdmd.Profile, error) {
	var out []mdmd.Profile
	err := s.table(ctx, "profiles").Order("name, id").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "profiles")
}

// UpdateProfile replaces a profile's name, settings and payload and bumps
// its version. The identifier cannot change (devices know it by that).
func (s *Store) UpdateProfile(ctx context.Context, p *mdmd.Profile) error {
	if p.Name == "" || len(p.Name) > 200 || len(p.Payload) == 0 {
		return mdmd.FieldError("profile", "name and payload are required")
	}
	res := s.table(ctx, "profiles").Where("id = ? AND identifier = ?", p.ID, p.Identifier).Updates(map[string]any{
		"name": p.Name, "settings": []byte(p.Settings), "payload": p.Payload,
		"version": gorm.Expr("version + 1"), "updated_at": s.Now()})
	if res.Error != nil {
		return dbErr(res.Error, "profile")
	}
	if res.RowsAffected == 0 {
		if _, err := s.GetProfile(ctx, p.ID); err != nil {
			return err
		}
		return mdmd.FieldError("identifier", "a profile's identifier cannot change")
	}
	got, err := s.GetProfile(ctx, p.ID)
	if err == nil {
		*p = *got
	}
	return err
}

// DeleteProfile removes a profile and its assignments. Devices that have
// it keep a row without profile ID, which reconciliation removes.
func (s *Store) DeleteProfile(ctx context.Context, id string) error {
	res := s.table(ctx, "profiles").Where("id = ?", id).Delete(&mdmd.Profile{})
	if res.Error != nil {
		return dbErr(res.Error, "profile")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "profile not found")
	}
	return nil
}

// AssignProfile puts a profile on a device or a group. Assigning twice is
// not an error.
func (s *Store) AssignProfile(ctx context.Context, a *mdmd.ProfileAssignment) error {
	if _, err := s.GetProfile(ctx, a.ProfileID); err != nil {
		return err
	}
	switch a.TargetType {
	case mdmd.TargetDevice:
		if _, err := s.GetDevice(ctx, a.TargetID); err != nil {
			return err
		}
	case mdmd.TargetGroup:
		if _, err := s.GetGroup(ctx, a.TargetID); err != nil {
			return err
		}
	default:
		return mdmd.FieldError("target_type", "must be device or group, got %q", a.TargetType)
	}
	a.CreatedAt = s.Now()
	err := s.table(ctx, "profile_assignments").Clauses(clause.OnConflict{DoNothing: true}).Create(a).Error
	return dbErr(err, "assignment")
}

// UnassignProfile removes an assignment.
func (s *Store) UnassignProfile(ctx context.Context, a *mdmd.ProfileAssignment) error {
	res := s.table(ctx, "profile_assignments").Where("profile_id = ? AND target_type = ? AND target_id = ?",
		a.ProfileID, a.TargetType, a.TargetID).Delete(&mdmd.ProfileAssignment{})
	if res.Error != nil {
		return dbErr(res.Error, "assignment")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "assignment not found")
	}
	return nil
}

// ListAssignments returns a profile's assignments.
func (s *Store) ListAssignments(ctx context.Context, profileID string) ([]mdmd.ProfileAssignment, error) {
	var out []mdmd.ProfileAssignment
	err := s.table(ctx, "profile_assignments").Where("profile_id = ?", profileID).Order("target_type, target_id").Find(&out).Error
	return out, dbErr(err, "assignments")
}

// DesiredProfiles returns the profiles a device should have: assigned to
// it or to one of its groups.
func (s *Store) DesiredProfiles(ctx context.Context, deviceID string) ([]mdmd.Profile, error) {
	var out []mdmd.Profile
	err := s.table(ctx, "profiles").Where(`id IN (SELECT profile_id FROM profile_assignments
WHERE (target_type = 'device' AND target_id = ?)
   OR (target_type = 'group' AND target_id IN (SELECT group_id FROM device_groups WHERE device_id = ?)))`, deviceID, deviceID).
		Order("identifier").Find(&out).Error
	return out, dbErr(err, "profiles")
}

// DevicesForProfile returns the devices a profile change concerns: those
// it is assigned to (directly or by group) and those that have it.
func (s *Store) DevicesForProfile(ctx context.Context, profileID string) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT target_id FROM profile_assignments WHERE profile_id = ? AND target_type = 'device'
UNION SELECT dg.device_id FROM device_groups dg JOIN profile_assignments pa ON pa.target_type = 'group' AND pa.target_id = dg.group_id
WHERE pa.profile_id = ?
UNION SELECT device_id FROM device_profiles WHERE profile_id = ?`, profileID, profileID, profileID).Scan(&ids).Error
	return ids, dbErr(err, "devices")
}

// DeviceProfiles returns what mdmd installed on a device.
func (s *Store) DeviceProfiles(ctx context.Context, deviceID string) ([]mdmd.DeviceProfile, error) {
	var out []mdmd.DeviceProfile
	err := s.table(ctx, "device_profiles").Where("device_id = ?", deviceID).Order("identifier").Find(&out).Error
	return out, dbErr(err, "device profiles")
}

// PutDeviceProfile records a device profile's state.
func (s *Store) PutDeviceProfile(ctx context.Context, dp *mdmd.DeviceProfile) error {
	dp.UpdatedAt = s.Now()
	return s.Tx(ctx, func(tx *Store) error {
		err := tx.table(ctx, "device_profiles").Clauses(clause.OnConflict{UpdateAll: true}).Create(dp).Error
		if err != nil {
			return dbErr(err, "device profile")
		}
		return tx.markDirty(ctx, dp.DeviceID) // required profiles
	})
}

// DeviceProfileByCommand returns the device profile a command acts on.
func (s *Store) DeviceProfileByCommand(ctx context.Context, commandID string) (*mdmd.DeviceProfile, error) {
	var dp mdmd.DeviceProfile
	err := s.table(ctx, "device_profiles").Where("command_id = ?", commandID).Take(&dp).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, mdmd.Errorf(mdmd.ENotFound, "no device profile for command")
	}
	return &dp, dbErr(err, "device profile")
}

// DeleteDeviceProfile forgets a profile that was removed from a device.
func (s *Store) DeleteDeviceProfile(ctx context.Context, deviceID, identifier string) error {
	return s.Tx(ctx, func(tx *Store) error {
		err := tx.table(ctx, "device_profiles").Where("device_id = ? AND identifier = ?", deviceID, identifier).Delete(&mdmd.DeviceProfile{}).Error
		if err != nil {
			return dbErr(err, "device profile")
		}
		return tx.markDirty(ctx, deviceID)
	})
}
