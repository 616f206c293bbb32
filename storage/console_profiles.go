package storage

import (
	"context"

	"github.com/mdmd/mdmd"
)

// ListAllAssignments returns every profile assignment, by profile.
func (s *Store) ListAllAssignments(ctx context.Context) ([]mdmd.ProfileAssignment, error) {
	var out []mdmd.ProfileAssignment
	err := s.table(ctx, "profile_assignments").Order("profile_id, target_type, target_id").Find(&out).Error
	return out, dbErr(err, "assignments")
}

// CountProfileInstalls counts, for every profile that is on devices (or
// on its way to or from them), its devices by install state.
func (s *Store) CountProfileInstalls(ctx context.Context) (map[string]map[string]int64, error) {
	var rows []struct {
		ProfileID string `gorm:"column:profile_id"`
		State     string `gorm:"column:state"`
		N         int64  `gorm:"column:n"`
	}
	err := s.table(ctx, "device_profiles").Select("profile_id, state, COUNT(*) AS n").
		Where("profile_id IS NOT NULL").Group("profile_id, state").Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err, "device profiles")
	}
	out := map[string]map[string]int64{}
	for _, r := range rows {
		if out[r.ProfileID] == nil {
			out[r.ProfileID] = map[string]int64{}
		}
		out[r.ProfileID][r.State] = r.N
	}
	return out, nil
}

// ProfileInstalls returns up to limit devices' copies of a profile
// (installed, installing, removing or failed), by device ID, and those
// devices.
func (s *Store) ProfileInstalls(ctx context.Context, profileID string, limit int) ([]mdmd.DeviceProfile, []mdmd.Device, error) {
	if limit <= 0 || limit > mdmd.MaxPageSize {
		limit = mdmd.MaxPageSize
	}
	var rows []mdmd.DeviceProfile
	err := s.table(ctx, "device_profiles").Where("profile_id = ?", profileID).Order("device_id").Limit(limit).Find(&rows).Error
	if err != nil || len(rows) == 0 {
		return rows, nil, dbErr(err, "device profiles")
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.DeviceID
	}
	var devs []mdmd.Device
	err = s.table(ctx, "devices").Where("id IN ?", ids).Order("id").Find(&devs).Error
	return rows, devs, dbErr(err, "devices")
}
