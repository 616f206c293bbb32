package storage

import (
	"context"
	"encoding/json"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

// complianceFeedLock is the PostgreSQL advisory lock that writers of the
// change feed hold until commit, so that seq values commit in order.
const complianceFeedLock = 0x6d646d64636f6d70

// RecordCompliance stores one device's evaluated state, as
// RecordCompliances does, and returns the previous state and whether it
// changed. A device that does not exist is not found.
func (s *Store) RecordCompliance(ctx context.Context, c *mdmd.DeviceCompliance, cause string) (prev string, changed bool, err error) {
	if c.DeviceID != "" {
		if _, err := s.GetDevice(ctx, c.DeviceID); err != nil {
			return "", false, err
		}
	}
	res, err := s.RecordCompliances(ctx, []*mdmd.DeviceCompliance{c}, cause)
	if err != nil {
		return "", false, err
	}
	return res[0].Previous, res[0].Changed, nil
}

// failedRules names the rules whose outcome is "failed" in the JSON of
// an evaluation's rule results.
func failedRules(rules mdmd.RawJSON) []string {
	var rs []struct{ Rule, Outcome string }
	_ = json.Unmarshal(rules, &rs)
	out := []string{}
	for _, r := range rs {
		if r.Outcome == "failed" {
			out = append(out, r.Rule)
		}
	}
	return out
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

func validCompliancePolicy(p *mdmd.CompliancePolicy) error {
	switch {
	case p.Name == "" || len(p.Name) > 200:
		return mdmd.FieldError("name", "must be 1 to 200 characters")
	case p.Platform != "" && !p.Platform.Valid():
		return mdmd.FieldError("platform", "must be ios, android or empty, got %q", p.Platform)
	case len(p.Rules) == 0 || !json.Valid(p.Rules) || p.Rules[0] != '{':
		return mdmd.FieldError("rules", "must be a JSON object")
	}
	return nil
}

// CreateCompliancePolicy stores a new policy. A taken name, or a second
// default for the same platform, is a conflict.
func (s *Store) CreateCompliancePolicy(ctx context.Context, p *mdmd.CompliancePolicy) error {
	if err := validCompliancePolicy(p); err != nil {
		return err
	}
	if p.ID == "" {
		p.ID = newID()
	}
	now := s.Now()
	p.Version, p.CreatedAt, p.UpdatedAt = 1, now, now
	return dbErr(s.table(ctx, "compliance_policies").Create(p).Error, "compliance policy")
}

// GetCompliancePolicy returns the policy with the given ID.
func (s *Store) GetCompliancePolicy(ctx context.Context, id string) (*mdmd.CompliancePolicy, error) {
	var p mdmd.CompliancePolicy
	err := s.table(ctx, "compliance_policies").Where("id = ?", id).Take(&p).Error
	return &p, dbErr(err, "compliance policy")
}

// ListCompliancePolicies returns every policy by name.
func (s *Store) ListCompliancePolicies(ctx context.Context) ([]mdmd.CompliancePolicy, error) {
	var out []mdmd.CompliancePolicy
	err := s.table(ctx, "compliance_policies").Order("name, id").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "compliance policies")
}

// UpdateCompliancePolicy replaces a policy's name, rules and default flag
// and bumps its version. Its platform cannot change.
func (s *Store) UpdateCompliancePolicy(ctx context.Context, p *mdmd.CompliancePolicy) error {
	cur, err := s.GetCompliancePolicy(ctx, p.ID)
	if err != nil {
		return err
	}
	p.Platform = cur.Platform
	if err := validCompliancePolicy(p); err != nil {
		return err
	}
	res := s.table(ctx, "compliance_policies").Where("id = ?", p.ID).Updates(map[string]any{
		"name": p.Name, "rules": string(p.Rules), "is_default": p.IsDefault,
		"version": gorm.Expr("version + 1"), "updated_at": s.Now()})
	if res.Error != nil {
		return dbErr(res.Error, "compliance policy")
	}
	got, err := s.GetCompliancePolicy(ctx, p.ID)
	if err != nil {
		return err
	}
	*p = *got
	return nil
}

// DeleteCompliancePolicy removes a policy and its group assignments.
func (s *Store) DeleteCompliancePolicy(ctx context.Context, id string) error {
	res := s.table(ctx, "compliance_policies").Where("id = ?", id).Delete(&mdmd.CompliancePolicy{})
	if res.Error != nil {
		return dbErr(res.Error, "compliance policy")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "no compliance policy %s", id)
	}
	return nil
}

// AssignCompliancePolicy assigns a policy to a group, or changes the
// priority of an existing assignment.
func (s *Store) AssignCompliancePolicy(ctx context.Context, a *mdmd.CompliancePolicyGroup) error {
	if a.Priority < 0 || a.Priority > 1_000_000 {
		return mdmd.FieldError("priority", "must be between 0 and 1000000")
	}
	if _, err := s.GetCompliancePolicy(ctx, a.PolicyID); err != nil {
		return err
	}
	if _, err := s.GetGroup(ctx, a.GroupID); err != nil {
		return err
	}
	err := s.table(ctx, "compliance_policy_groups").Clauses(clause.OnConflict{
		Columns: []clause.Column{{Name: "policy_id"}, {Name: "group_id"}}, DoUpdates: clause.AssignmentColumns([]string{"priority"}),
	}).Create(a).Error
	return dbErr(err, "compliance policy assignment")
}

// UnassignCompliancePolicy removes a policy from a group.
func (s *Store) UnassignCompliancePolicy(ctx context.Context, policyID, groupID string) error {
	res := s.table(ctx, "compliance_policy_groups").Where("policy_id = ? AND group_id = ?", policyID, groupID).
		Delete(&mdmd.CompliancePolicyGroup{})
	if res.Error != nil {
		return dbErr(res.Error, "compliance policy assignment")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "policy %s is not assigned to group %s", policyID, groupID)
	}
	return nil
}

// PolicyForDevice returns the policy that applies to a device (see
// choosePolicies); with none it is not found.
func (s *Store) PolicyForDevice(ctx context.Context, deviceID string) (*mdmd.CompliancePolicy, error) {
	in, err := s.ComplianceInputs(ctx, []string{deviceID})
	switch {
	case err != nil:
		return nil, err
	case len(in) == 0:
		return nil, mdmd.Errorf(mdmd.ENotFound, "no device %s", deviceID)
	case in[0].Policy == nil:
		return nil, mdmd.Errorf(mdmd.ENotFound, "no compliance policy applies to device %s", deviceID)
	}
	return in[0].Policy, nil
}
