package storage

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

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
// evaluation. An evaluation older (by EvaluatedAt) than the stored one is
// not stored: evaluators take the time before they read the device, so the
// newer reading always wins a race.
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
	row, stale := *c, false
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
		var found []mdmd.Device
		if err := tx.db.WithContext(ctx).Raw("SELECT * FROM devices WHERE id = ?"+lock, row.DeviceID).Scan(&found).Error; err != nil {
			return dbErr(err, "device")
		}
		if len(found) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no device %s", row.DeviceID)
		}
		var cur mdmd.DeviceCompliance
		switch err := tx.table(ctx, "device_compliance").Where("device_id = ?", row.DeviceID).Take(&cur).Error; {
		case err == nil:
			prev = cur.State
			if row.EvaluatedAt.Before(cur.EvaluatedAt) {
				// An evaluation that began before the stored one finished
				// after it: its snapshot may be older, so it loses.
				stale = true
				return nil
			}
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
		if err := tx.lockFeed(ctx); err != nil {
			return err
		}
		ch := mdmd.ComplianceChange{DeviceID: row.DeviceID, FromState: prev, ToState: row.State, PolicyID: row.PolicyID,
			Reason: row.Reason, Rules: row.Rules, Cause: cause, At: now}
		if err := tx.table(ctx, "compliance_changes").Create(&ch).Error; err != nil {
			return dbErr(err, "compliance feed")
		}
		return tx.AppendEvent(ctx, mdmd.EventComplianceChanged, row.DeviceID, mdmd.ComplianceChangedData{
			EventDevice: mdmd.NewEventDevice(&found[0]), PreviousState: prev, CurrentState: row.State,
			PolicyID: row.PolicyID, Reason: row.Reason, FailedRules: failedRules(row.Rules), Cause: cause, EvaluatedAt: row.EvaluatedAt})
	})
	if err != nil || stale {
		return prev, false, err
	}
	*c = row
	return prev, changed, nil
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

// PolicyForDevice returns the policy that applies to a device: the one
// assigned to its groups with the lowest priority number (for its platform
// or every platform), else its platform's default, else the default for
// every platform. With none of these it is not found.
func (s *Store) PolicyForDevice(ctx context.Context, deviceID string) (*mdmd.CompliancePolicy, error) {
	d, err := s.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	var ps []mdmd.CompliancePolicy
	err = s.db.WithContext(ctx).Raw(`SELECT p.* FROM compliance_policies p
JOIN compliance_policy_groups a ON a.policy_id = p.id
JOIN device_groups g ON g.group_id = a.group_id
WHERE g.device_id = ? AND p.platform IN ('', ?)
ORDER BY a.priority, p.name, p.id LIMIT 1`, deviceID, string(d.Platform)).Scan(&ps).Error
	if err != nil {
		return nil, dbErr(err, "compliance policy")
	}
	if len(ps) == 0 {
		// The platform's default sorts before the all-platform one.
		err = s.table(ctx, "compliance_policies").Where("is_default AND platform IN ('', ?)", string(d.Platform)).
			Order("platform DESC").Limit(1).Find(&ps).Error
		if err != nil {
			return nil, dbErr(err, "compliance policy")
		}
	}
	if len(ps) == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "no compliance policy applies to device %s", deviceID)
	}
	return &ps[0], nil
}

// DevicesDueForCompliance returns up to limit devices not evaluated since
// before, those never evaluated first, then the longest ago.
func (s *Store) DevicesDueForCompliance(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 || limit > mdmd.MaxPageSize {
		limit = mdmd.MaxPageSize
	}
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT d.id FROM devices d
LEFT JOIN device_compliance c ON c.device_id = d.id
WHERE c.evaluated_at IS NULL OR c.evaluated_at < ?
ORDER BY (c.evaluated_at IS NOT NULL), c.evaluated_at, d.id LIMIT ?`, utc(before), limit).Scan(&ids).Error
	return ids, dbErr(err, "devices")
}
