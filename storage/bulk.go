package storage

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// CreateBulkAction stores a new bulk action in b.State (awaiting approval
// or running) together with its devices: every enrolled device its filter
// selects now, copied in one statement. It assigns the ID, creation time
// and Total. A filter that selects no device, or more than
// mdmd.MaxBulkDevices, is refused and nothing is stored; so is a count
// other than expect, when expect is not negative (the number a requester
// typed back to confirm a wipe, checked in the same transaction).
func (s *Store) CreateBulkAction(ctx context.Context, b *mdmd.BulkAction, expect int) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if b.State != mdmd.BulkAwaitingApproval && b.State != mdmd.BulkRunning {
		return mdmd.FieldError("state", "a new bulk action is awaiting approval or running, not %q", b.State)
	}
	b.ID, b.CreatedAt, b.Total, b.FinishedAt = newID(), s.Now(), 0, nil
	if b.State == mdmd.BulkRunning {
		b.StartedAt = &b.CreatedAt
	}
	return s.Tx(ctx, func(tx *Store) error {
		if err := tx.table(ctx, "bulk_actions").Create(b).Error; err != nil {
			return dbErr(err, "bulk action")
		}
		// One row past the limit is enough to refuse.
		devices := tx.consoleDeviceQuery(ctx, b.Filter.Console()).
			Select("? AS bulk_id, devices.id AS device_id, ? AS state", b.ID, mdmd.TargetPending).
			Limit(mdmd.MaxBulkDevices + 1)
		res := tx.db.WithContext(ctx).Exec("INSERT INTO bulk_action_targets (bulk_id, device_id, state) SELECT * FROM (?) AS s", devices)
		if res.Error != nil {
			return dbErr(res.Error, "bulk action devices")
		}
		switch n := res.RowsAffected; {
		case n == 0:
			return mdmd.Errorf(mdmd.EInvalid, "the filter selects no enrolled device: nothing to do")
		case n > mdmd.MaxBulkDevices:
			return mdmd.Errorf(mdmd.EInvalid, "the filter selects more than %d devices, the most one bulk action takes", mdmd.MaxBulkDevices)
		case expect >= 0 && n != int64(expect):
			return mdmd.FieldError("confirm", "type the number of devices the filter selects (%d) to confirm", n)
		default:
			b.Total = int(n)
		}
		return dbErr(tx.table(ctx, "bulk_actions").Where("id = ?", b.ID).Update("total", b.Total).Error, "bulk action")
	})
}

// GetBulkAction returns a bulk action.
func (s *Store) GetBulkAction(ctx context.Context, id string) (*mdmd.BulkAction, error) {
	var b mdmd.BulkAction
	err := s.table(ctx, "bulk_actions").Where("id = ?", id).Take(&b).Error
	return &b, dbErr(err, "bulk action")
}

// ListBulkActions returns the newest bulk actions.
func (s *Store) ListBulkActions(ctx context.Context, limit int) ([]mdmd.BulkAction, error) {
	var out []mdmd.BulkAction
	err := s.table(ctx, "bulk_actions").Order("created_at DESC, id DESC").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "bulk actions")
}

// SetBulkApproval records the approval a bulk action waits for.
func (s *Store) SetBulkApproval(ctx context.Context, id, approvalID string) error {
	res := s.table(ctx, "bulk_actions").Where("id = ? AND state = ?", id, mdmd.BulkAwaitingApproval).
		Update("approval_id", approvalID)
	if res.Error == nil && res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.EConflict, "bulk action %s is not awaiting approval", id)
	}
	return dbErr(res.Error, "bulk action")
}

// MoveBulkAction moves a bulk action from one state to another in one
// conditional update, so of concurrent moves exactly one succeeds; the
// others get a conflict. Moving to running sets the start time, to done or
// cancelled the finish time.
func (s *Store) MoveBulkAction(ctx context.Context, id, from, to string) (*mdmd.BulkAction, error) {
	now := s.Now()
	set := map[string]any{"state": to}
	switch to {
	case mdmd.BulkRunning:
		set["started_at"] = now
	case mdmd.BulkDone, mdmd.BulkCancelled:
		set["finished_at"] = now
	default:
		return nil, mdmd.FieldError("state", "cannot move a bulk action to %q", to)
	}
	q := s.table(ctx, "bulk_actions").Where("id = ? AND state = ?", id, from)
	if to == mdmd.BulkDone {
		// Done only once no device is left to send.
		q = q.Where("NOT EXISTS (SELECT 1 FROM bulk_action_targets WHERE bulk_id = ? AND state = ?)", id, mdmd.TargetPending)
	}
	res := q.Updates(set)
	if res.Error != nil {
		return nil, dbErr(res.Error, "bulk action")
	}
	b, err := s.GetBulkAction(ctx, id)
	switch {
	case res.RowsAffected == 0 && err != nil:
		return nil, err
	case res.RowsAffected == 0:
		return b, mdmd.Errorf(mdmd.EConflict, "bulk action %s is %s, not %s", id, b.State, from)
	case err != nil:
		// Moved: only reading it back failed.
		return &mdmd.BulkAction{ID: id, State: to}, nil
	}
	return b, nil
}

// ClaimBulkTargets claims up to n pending devices of a running bulk action
// for lease: no other replica claims them until the lease runs out, so a
// claim whose replica died is taken over then. It returns their IDs in
// order.
func (s *Store) ClaimBulkTargets(ctx context.Context, bulkID string, n int, lease time.Duration) ([]string, error) {
	now := s.Now()
	lock := ""
	if s.dialect == migrations.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var ids []string
	// Only while the action runs: a cancelled one sends nothing more.
	err := s.db.WithContext(ctx).Raw(`UPDATE bulk_action_targets SET claimed_until = ?
WHERE bulk_id = ? AND device_id IN (SELECT device_id FROM bulk_action_targets
  WHERE bulk_id = ? AND state = ? AND (claimed_until IS NULL OR claimed_until < ?)
    AND EXISTS (SELECT 1 FROM bulk_actions WHERE id = ? AND state = ?)
  ORDER BY device_id LIMIT ?`+lock+`)
RETURNING device_id`, now.Add(lease), bulkID, bulkID, mdmd.TargetPending, now, bulkID, mdmd.BulkRunning, n).Scan(&ids).Error
	if err != nil {
		return nil, dbErr(err, "bulk action devices")
	}
	slices.Sort(ids)
	return ids, nil
}

// FinishBulkTargets records what sending claimed devices gave, in one
// statement. A device no longer pending (another replica finished it after
// a lease ran out) keeps its first result.
func (s *Store) FinishBulkTargets(ctx context.Context, bulkID string, results []mdmd.BulkResult) error {
	if len(results) == 0 {
		return nil
	}
	for _, r := range results {
		switch r.State {
		case mdmd.TargetSent, mdmd.TargetFailed, mdmd.TargetSkipped:
		default:
			return mdmd.FieldError("state", "a finished target is sent, failed or skipped, not %q", r.State)
		}
	}
	for start := 0; start < len(results); start += 500 {
		batch := results[start:min(start+500, len(results))]
		var sb strings.Builder
		args := make([]any, 0, 2+4*len(batch)+2)
		args = append(args, s.Now())
		sb.WriteString(`UPDATE bulk_action_targets SET state = v.column2, command_id = v.column3, error = v.column4,
  claimed_until = NULL, updated_at = ? FROM (VALUES `)
		for i, r := range batch {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?)")
			msg := r.Error
			if len(msg) > 500 {
				msg = msg[:500]
			}
			args = append(args, r.DeviceID, r.State, r.CommandID, msg)
		}
		sb.WriteString(`) AS v WHERE bulk_action_targets.bulk_id = ? AND bulk_action_targets.device_id = v.column1
  AND bulk_action_targets.state = ?`)
		args = append(args, bulkID, mdmd.TargetPending)
		if err := s.db.WithContext(ctx).Exec(sb.String(), args...).Error; err != nil {
			return dbErr(err, "bulk action devices")
		}
	}
	return nil
}

// BulkProgress counts a bulk action's devices by state, and its sent
// commands by where they are.
func (s *Store) BulkProgress(ctx context.Context, bulkID string) (*mdmd.BulkProgress, error) {
	var rows []struct {
		State  string
		Status *string
		N      int
	}
	err := s.db.WithContext(ctx).Raw(`SELECT t.state AS state, c.status AS status, count(*) AS n
FROM bulk_action_targets t LEFT JOIN commands c ON c.id = t.command_id AND t.command_id <> ''
WHERE t.bulk_id = ? GROUP BY t.state, c.status`, bulkID).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err, "bulk action devices")
	}
	p := &mdmd.BulkProgress{}
	for _, r := range rows {
		p.Total += r.N
		switch r.State {
		case mdmd.TargetPending:
			p.Pending += r.N
		case mdmd.TargetFailed:
			p.Failed += r.N
		case mdmd.TargetSkipped:
			p.Skipped += r.N
		case mdmd.TargetSent:
			p.Sent += r.N
			status := ""
			if r.Status != nil {
				status = *r.Status
			}
			switch mdmd.CommandStatus(status) {
			case "":
				p.Untracked += r.N // its command was pruned, or its device deleted
			case mdmd.CommandAcknowledged:
				p.Acknowledged += r.N
			case mdmd.CommandError, mdmd.CommandFormatError, mdmd.CommandCanceled:
				p.Errors += r.N
			default:
				p.InFlight += r.N
			}
		}
	}
	return p, nil
}

// ListBulkTargets returns a page of a bulk action's devices in device ID
// order, optionally only those in a state, each with the device's name and
// its command's status.
func (s *Store) ListBulkTargets(ctx context.Context, bulkID, state, after string, limit int) ([]mdmd.BulkTarget, string, error) {
	q := s.db.WithContext(ctx).Table("bulk_action_targets t").
		Select("t.*, coalesce(d.name, '') AS device_name, coalesce(c.status, '') AS command_status").
		Joins("LEFT JOIN devices d ON d.id = t.device_id").
		Joins("LEFT JOIN commands c ON c.id = t.command_id AND t.command_id <> ''").
		Where("t.bulk_id = ?", bulkID)
	if state != "" {
		switch state {
		case mdmd.TargetPending, mdmd.TargetSent, mdmd.TargetFailed, mdmd.TargetSkipped:
		default:
			return nil, "", mdmd.FieldError("state", "unknown target state %q", state)
		}
		q = q.Where("t.state = ?", state)
	}
	if after != "" {
		q = q.Where("t.device_id > ?", after)
	}
	limit = limitOf(limit)
	var out []mdmd.BulkTarget
	if err := q.Order("t.device_id").Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, "", dbErr(err, "bulk action devices")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].DeviceID
	}
	return out, next, nil
}

// RunningBulkActions returns the IDs of the bulk actions still sending.
func (s *Store) RunningBulkActions(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.table(ctx, "bulk_actions").Where("state = ?", mdmd.BulkRunning).Order("created_at").Pluck("id", &ids).Error
	return ids, dbErr(err, "bulk actions")
}

// GetDevices returns the devices with the given IDs that exist, in no
// particular order.
func (s *Store) GetDevices(ctx context.Context, ids []string) ([]mdmd.Device, error) {
	var out []mdmd.Device
	if len(ids) == 0 {
		return out, nil
	}
	err := s.table(ctx, "devices").Where("id IN ?", ids).Find(&out).Error
	return out, dbErr(err, "devices")
}

// PruneBulkActions deletes bulk actions that finished (done or cancelled)
// before the time, with their devices, and returns how many it deleted.
func (s *Store) PruneBulkActions(ctx context.Context, before time.Time) (int64, error) {
	res := s.table(ctx, "bulk_actions").Where("state IN ? AND finished_at < ?",
		[]string{mdmd.BulkDone, mdmd.BulkCancelled}, utc(before)).Delete(&mdmd.BulkAction{})
	return res.RowsAffected, dbErr(res.Error, "bulk actions")
}
