package storage

import (
	"context"
	"slices"
	"time"

	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

var actionStates = []string{mdmd.ActionRunning, mdmd.ActionPendingApproval, mdmd.ActionDone, mdmd.ActionRejected,
	mdmd.ActionFailed, mdmd.ActionCancelled}

// FailingDevices returns up to limit devices in an episode of failing
// (noncompliant or in grace), by ID after the cursor.
func (s *Store) FailingDevices(ctx context.Context, after string, limit int) ([]mdmd.FailingDevice, error) {
	var out []mdmd.FailingDevice
	err := s.table(ctx, "device_compliance").Select("device_id, policy_id, state, failing_since").
		Where("device_id > ? AND state IN ? AND failing_since IS NOT NULL", after, []string{"noncompliant", "in_grace"}).
		Order("device_id").Limit(limitOf(limit)).Scan(&out).Error
	return out, dbErr(err, "compliance states")
}

// EpisodeActions returns the actions taken against the devices.
func (s *Store) EpisodeActions(ctx context.Context, deviceIDs []string) ([]mdmd.ComplianceAction, error) {
	var out []mdmd.ComplianceAction
	if len(deviceIDs) == 0 {
		return nil, nil
	}
	err := s.table(ctx, "compliance_actions").Where("device_id IN ?", deviceIDs).Find(&out).Error
	return out, dbErr(err, "compliance actions")
}

// StartComplianceAction records an action for a device's episode unless
// one is recorded already, and reports whether this call recorded it:
// of several schedulers (replicas) only one gets to carry it out.
func (s *Store) StartComplianceAction(ctx context.Context, a *mdmd.ComplianceAction) (bool, error) {
	if a.State != mdmd.ActionRunning && a.State != mdmd.ActionPendingApproval {
		return false, mdmd.FieldError("state", "an action starts running or pending approval")
	}
	a.ID = newID()
	a.Episode = utc(a.Episode)
	a.CreatedAt, a.UpdatedAt = s.Now(), s.Now()
	started := false
	err := s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "compliance_actions").Clauses(clause.OnConflict{DoNothing: true}).Create(a)
		if res.Error != nil || res.RowsAffected == 0 {
			return dbErr(res.Error, "compliance action")
		}
		started = true
		return tx.actionEvent(ctx, a)
	})
	return started && err == nil, err
}

// ReclaimComplianceAction takes over an action left running since before
// (its scheduler stopped) and reports whether this call got it: of
// several schedulers only one carries it out again.
func (s *Store) ReclaimComplianceAction(ctx context.Context, id string, before time.Time) (bool, error) {
	res := s.table(ctx, "compliance_actions").Where("id = ? AND state = ? AND updated_at < ?", id, mdmd.ActionRunning, utc(before)).
		Update("updated_at", s.Now())
	return res.RowsAffected == 1, dbErr(res.Error, "compliance action")
}

// ApproveComplianceAction moves a wipe waiting for approval to running,
// in one statement with the check that its episode is still going on: a
// device that recovered since the list was shown is never wiped. Such an
// approval is cancelled instead and the answer is a conflict.
func (s *Store) ApproveComplianceAction(ctx context.Context, id, by string) (*mdmd.ComplianceAction, error) {
	var out *mdmd.ComplianceAction
	err := s.Tx(ctx, func(tx *Store) error {
		res := tx.db.WithContext(ctx).Exec(`UPDATE compliance_actions SET state = ?, decided_by = ?, detail = ?, updated_at = ?
WHERE id = ? AND state = ? AND EXISTS (SELECT 1 FROM device_compliance c WHERE c.device_id = compliance_actions.device_id
    AND c.failing_since = compliance_actions.episode AND c.state IN ('noncompliant', 'in_grace'))`,
			mdmd.ActionRunning, by, "approved", tx.Now(), id, mdmd.ActionPendingApproval)
		if res.Error != nil {
			return dbErr(res.Error, "compliance action")
		}
		if res.RowsAffected == 1 {
			a, err := tx.GetComplianceAction(ctx, id)
			if err != nil {
				return err
			}
			out = a
			return tx.actionEvent(ctx, a)
		}
		return nil
	})
	if err != nil || out != nil {
		return out, err
	}
	cur, err := s.GetComplianceAction(ctx, id)
	if err != nil {
		return nil, err
	}
	if cur.State != mdmd.ActionPendingApproval {
		return nil, mdmd.Errorf(mdmd.EConflict, "the action is %s, not waiting for approval", cur.State)
	}
	if _, err := s.FinishComplianceAction(ctx, id, mdmd.ActionPendingApproval,
		mdmd.ComplianceAction{State: mdmd.ActionCancelled, DecidedBy: by, Detail: "the device is no longer failing"}); err != nil && !mdmd.IsCode(err, mdmd.EConflict) {
		return nil, err
	}
	return nil, mdmd.Errorf(mdmd.EConflict, "the device is no longer failing: the wipe was cancelled, not sent")
}

// FinishComplianceAction moves an action from one state to another (the
// move fails with a conflict if it is no longer in from) and logs it.
func (s *Store) FinishComplianceAction(ctx context.Context, id, from string, a mdmd.ComplianceAction) (*mdmd.ComplianceAction, error) {
	if !slices.Contains(actionStates, a.State) {
		return nil, mdmd.FieldError("state", "unknown action state %q", a.State)
	}
	var out mdmd.ComplianceAction
	err := s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "compliance_actions").Where("id = ? AND state = ?", id, from).Updates(map[string]any{
			"state": a.State, "detail": a.Detail, "command_id": a.CommandID, "decided_by": a.DecidedBy, "updated_at": tx.Now()})
		if res.Error != nil {
			return dbErr(res.Error, "compliance action")
		}
		if res.RowsAffected == 0 {
			cur, err := tx.GetComplianceAction(ctx, id)
			if err != nil {
				return err
			}
			return mdmd.Errorf(mdmd.EConflict, "the action is %s, not %s", cur.State, from)
		}
		if err := tx.table(ctx, "compliance_actions").Where("id = ?", id).Take(&out).Error; err != nil {
			return dbErr(err, "compliance action")
		}
		return tx.actionEvent(ctx, &out)
	})
	return &out, err
}

func (s *Store) actionEvent(ctx context.Context, a *mdmd.ComplianceAction) error {
	d, err := s.GetDevice(ctx, a.DeviceID)
	if err != nil {
		return err
	}
	return s.AppendEvent(ctx, mdmd.EventComplianceAction, a.DeviceID, mdmd.ComplianceActionData{EventDevice: mdmd.NewEventDevice(d),
		ActionID: a.ID, Action: a.Action, State: a.State, PolicyID: a.PolicyID, Episode: a.Episode, Detail: a.Detail})
}

// GetComplianceAction returns an action.
func (s *Store) GetComplianceAction(ctx context.Context, id string) (*mdmd.ComplianceAction, error) {
	var a mdmd.ComplianceAction
	err := s.table(ctx, "compliance_actions").Where("id = ?", id).Take(&a).Error
	return &a, dbErr(err, "compliance action")
}

// ListComplianceActions returns the newest actions, optionally only those
// in a state or against a device.
func (s *Store) ListComplianceActions(ctx context.Context, state, deviceID string, limit int) ([]mdmd.ComplianceAction, error) {
	q := s.table(ctx, "compliance_actions")
	if state != "" {
		if !slices.Contains(actionStates, state) {
			return nil, mdmd.FieldError("state", "unknown action state %q", state)
		}
		q = q.Where("state = ?", state)
	}
	if deviceID != "" {
		q = q.Where("device_id = ?", deviceID)
	}
	var out []mdmd.ComplianceAction
	err := q.Order("created_at DESC, id DESC").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "compliance actions")
}

// StaleComplianceActions returns actions left running since before
// (their scheduler stopped), and approvals whose episode has ended: the
// device is no longer failing, or began failing again since.
func (s *Store) StaleComplianceActions(ctx context.Context, before time.Time) (running, ended []mdmd.ComplianceAction, err error) {
	err = s.table(ctx, "compliance_actions").Where("state = ? AND updated_at < ?", mdmd.ActionRunning, utc(before)).
		Limit(mdmd.MaxPageSize).Find(&running).Error
	if err != nil {
		return nil, nil, dbErr(err, "compliance actions")
	}
	err = s.db.WithContext(ctx).Raw(`SELECT a.* FROM compliance_actions a
LEFT JOIN device_compliance c ON c.device_id = a.device_id
WHERE a.state = ? AND (c.failing_since IS NULL OR c.failing_since <> a.episode OR c.state NOT IN ('noncompliant', 'in_grace'))
LIMIT ?`, mdmd.ActionPendingApproval, mdmd.MaxPageSize).Scan(&ended).Error
	return running, ended, dbErr(err, "compliance actions")
}
