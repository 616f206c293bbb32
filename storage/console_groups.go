package storage

import (
	"context"
	"strings"

	"github.com/mdmd/mdmd"
)

// ListCompliancePolicyAssignments returns every assignment of a
// compliance policy to a group, by policy and then priority.
func (s *Store) ListCompliancePolicyAssignments(ctx context.Context) ([]mdmd.CompliancePolicyGroup, error) {
	var out []mdmd.CompliancePolicyGroup
	err := s.table(ctx, "compliance_policy_groups").Order("policy_id, priority, group_id").Find(&out).Error
	return out, dbErr(err, "compliance policy assignments")
}

// ResolveDeviceRefs finds the devices an administrator named: each
// reference is a device's ID, or its serial number or name (either
// ignoring case). It returns the devices each reference matches (a name
// may match several); a reference that matches none is absent.
func (s *Store) ResolveDeviceRefs(ctx context.Context, refs []string) (map[string][]mdmd.Device, error) {
	if len(refs) > mdmd.MaxPageSize {
		return nil, mdmd.FieldError("devices", "at most %d devices at once", mdmd.MaxPageSize)
	}
	out := map[string][]mdmd.Device{}
	if len(refs) == 0 {
		return out, nil
	}
	lower := make([]string, len(refs))
	for i, r := range refs {
		lower[i] = strings.ToLower(r)
	}
	var ds []mdmd.Device
	err := s.table(ctx, "devices").Where("id IN ? OR (serial_number <> '' AND lower(serial_number) IN ?) OR (name <> '' AND lower(name) IN ?)",
		refs, lower, lower).Order("id").Find(&ds).Error
	if err != nil {
		return nil, dbErr(err, "devices")
	}
	for _, r := range refs {
		for _, d := range ds {
			if d.ID == r || (d.SerialNumber != "" && strings.EqualFold(d.SerialNumber, r)) || (d.Name != "" && strings.EqualFold(d.Name, r)) {
				out[r] = append(out[r], d)
			}
		}
	}
	return out, nil
}
