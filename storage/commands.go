package storage

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

var activeStatuses = []string{string(mdmd.CommandQueued), string(mdmd.CommandSent), string(mdmd.CommandNotNow)}

// deliveredStatuses are the open statuses of a command the device has seen.
var deliveredStatuses = []string{string(mdmd.CommandSent), string(mdmd.CommandNotNow)}

// EnqueueCommand queues a command for its device. It assigns an ID when
// none is set; an unknown device is not found.
func (s *Store) EnqueueCommand(ctx context.Context, c *mdmd.Command) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.ID == "" {
		c.ID = newID()
	}
	now := s.Now()
	c.Status, c.CreatedAt, c.UpdatedAt = mdmd.CommandQueued, now, now
	c.SentAt, c.CompletedAt, c.Result, c.Error, c.Deliveries = nil, nil, nil, "", 0
	return dbErr(s.table(ctx, "commands").Create(c).Error, "command")
}

// EnqueueCommands queues many commands in one transaction (bulk actions).
// All are validated first; an unknown device fails the whole batch.
func (s *Store) EnqueueCommands(ctx context.Context, cmds []*mdmd.Command) error {
	now := s.Now()
	for _, c := range cmds {
		if err := c.Validate(); err != nil {
			return err
		}
		if c.ID == "" {
			c.ID = newID()
		}
		c.Status, c.CreatedAt, c.UpdatedAt = mdmd.CommandQueued, now, now
		c.SentAt, c.CompletedAt, c.Result, c.Error, c.Deliveries = nil, nil, nil, "", 0
	}
	return s.Tx(ctx, func(tx *Store) error {
		return dbErr(tx.table(ctx, "commands").CreateInBatches(cmds, 500).Error, "commands")
	})
}

// GetCommand returns the command with the given ID.
func (s *Store) GetCommand(ctx context.Context, id string) (*mdmd.Command, error) {
	var c mdmd.Command
	err := s.table(ctx, "commands").Where("id = ?", id).Take(&c).Error
	return &c, dbErr(err, "command")
}

// NextCommand hands the device its next active command, highest priority
// first and then oldest, skipping the IDs in skip. It marks the command
// sent and returns nil when nothing is queued. It is the start of a device
// connection (Idle): commands the device deferred with NotNow in an
// earlier connection are queued again, so that NextCommandAfterNotNow
// skips only those deferred in this one.
func (s *Store) NextCommand(ctx context.Context, deviceID string, skip []string) (*mdmd.Command, error) {
	c, err := s.nextCommand(ctx, deviceID, skip, activeStatuses)
	if err != nil || c == nil {
		// No command at all means none is deferred either: nothing to reset.
		return c, err
	}
	err = s.table(ctx, "commands").Where("device_id = ? AND status = ? AND id <> ?", deviceID, mdmd.CommandNotNow, c.ID).
		Updates(map[string]any{"status": string(mdmd.CommandQueued), "updated_at": s.Now()}).Error
	return c, dbErr(err, "commands")
}

// NextCommandAfterNotNow is NextCommand within a connection, after the
// device reported a result: every command it deferred with NotNow is
// skipped until it starts a new connection with Idle, so it never loops on
// deferred commands. Nothing about the connection is kept in memory, so any
// replica can serve any request.
func (s *Store) NextCommandAfterNotNow(ctx context.Context, deviceID string) (*mdmd.Command, error) {
	return s.nextCommand(ctx, deviceID, nil, []string{string(mdmd.CommandQueued), string(mdmd.CommandSent)})
}

func (s *Store) nextCommand(ctx context.Context, deviceID string, skip, statuses []string) (*mdmd.Command, error) {
	now := s.Now()
	pick := "SELECT id FROM commands WHERE device_id = ? AND status IN ?"
	pickArgs := []any{deviceID, statuses}
	if len(skip) > 0 {
		pick += " AND id NOT IN ?"
		pickArgs = append(pickArgs, skip)
	}
	pick += " ORDER BY priority DESC, created_at, id LIMIT 1"
	args := append([]any{mdmd.CommandSent, now, now}, pickArgs...)
	if s.dialect == migrations.SQLite {
		// SQLite has one writer at a time, and an UPDATE takes the write
		// lock even when it matches nothing. Most check-ins find an empty
		// queue, so look first with a read; the UPDATE below re-checks.
		var id string
		err := s.db.WithContext(ctx).Raw(pick, pickArgs...).Scan(&id).Error
		if err != nil {
			return nil, dbErr(err, "command")
		}
		if id == "" {
			return nil, nil
		}
	}
	// One statement picks and marks the command: on PostgreSQL a single
	// round trip. The subquery reads the partial queue index
	// (device_id, priority, created_at).
	var out []mdmd.Command
	err := s.db.WithContext(ctx).Raw(`UPDATE commands SET status = ?, sent_at = ?, updated_at = ?, deliveries = deliveries + 1
WHERE id = (`+pick+`) RETURNING *`, args...).Scan(&out).Error
	if err != nil {
		return nil, dbErr(err, "command")
	}
	if len(out) == 0 {
		return nil, nil
	}
	return &out[0], nil
}

// RecordCommandResult stores a device's answer. The command must belong to
// that device (a device can never answer for another: it is not found),
// must have been delivered to it (a result for a command it was never sent
// is not found either) and must still be open (a second final answer is a
// conflict). NotNow keeps the command queued; the other statuses complete it.
func (s *Store) RecordCommandResult(ctx context.Context, deviceID, commandID string, r mdmd.CommandResult) (*mdmd.Command, error) {
	switch r.Status {
	case mdmd.CommandAcknowledged, mdmd.CommandError, mdmd.CommandFormatError, mdmd.CommandNotNow:
	default:
		return nil, mdmd.FieldError("status", "a device cannot report %q", r.Status)
	}
	now := s.Now()
	var completed any
	if r.Status.Final() {
		completed = now
	}
	var out []mdmd.Command
	err := s.db.WithContext(ctx).Raw(`UPDATE commands SET status = ?, updated_at = ?, result = ?, error = ?,
    completed_at = COALESCE(?, completed_at)
WHERE id = ? AND device_id = ? AND status IN ? RETURNING *`,
		string(r.Status), now, r.Raw, r.Error, completed, commandID, deviceID, deliveredStatuses).Scan(&out).Error
	if err != nil {
		return nil, dbErr(err, "command")
	}
	if len(out) == 0 {
		c, err := s.GetCommand(ctx, commandID)
		if err != nil || c.DeviceID != deviceID || c.Status == mdmd.CommandQueued {
			return nil, mdmd.Errorf(mdmd.ENotFound, "command not found among those sent to this device")
		}
		return nil, mdmd.Errorf(mdmd.EConflict, "command %s already has a final status (%s)", commandID, c.Status)
	}
	return &out[0], nil
}

// CancelCommand cancels a command that has no final answer yet.
func (s *Store) CancelCommand(ctx context.Context, id string) (*mdmd.Command, error) {
	now := s.Now()
	res := s.table(ctx, "commands").Where("id = ? AND status IN ?", id, activeStatuses).
		Updates(map[string]any{"status": string(mdmd.CommandCanceled), "updated_at": now, "completed_at": now})
	if res.Error != nil {
		return nil, dbErr(res.Error, "command")
	}
	c, err := s.GetCommand(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 0 {
		return nil, mdmd.Errorf(mdmd.EConflict, "command already has a final status (%s)", c.Status)
	}
	return c, nil
}

// ListCommands returns one page of commands, newest first, and the cursor
// of the next page.
func (s *Store) ListCommands(ctx context.Context, f mdmd.CommandFilter) ([]mdmd.Command, string, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", mdmd.FieldError("status", "unknown command status %q", f.Status)
	}
	q := s.table(ctx, "commands")
	if f.DeviceID != "" {
		q = q.Where("device_id = ?", f.DeviceID)
	}
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.After != "" {
		q = q.Where("id < ?", f.After)
	}
	limit := limitOf(f.Limit)
	var out []mdmd.Command
	if err := q.Order("id DESC").Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, "", dbErr(err, "commands")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// PruneCommands deletes commands that completed before the given time and
// returns how many it removed.
func (s *Store) PruneCommands(ctx context.Context, before time.Time) (int64, error) {
	res := s.table(ctx, "commands").Where("completed_at IS NOT NULL AND completed_at < ?", before.UTC()).
		Delete(&mdmd.Command{})
	return res.RowsAffected, dbErr(res.Error, "commands")
}

// MarkCommandSent records that a command was handed to the platform (an
// AMAPI operation). Only a queued command can be marked; the second of two
// racing senders gets a conflict.
func (s *Store) MarkCommandSent(ctx context.Context, id, externalID string) (*mdmd.Command, error) {
	now := s.Now()
	var ext any
	if externalID != "" {
		ext = externalID
	}
	res := s.table(ctx, "commands").Where("id = ? AND status = ?", id, mdmd.CommandQueued).
		Updates(map[string]any{"status": string(mdmd.CommandSent), "external_id": ext, "sent_at": now, "updated_at": now,
			"deliveries": gorm.Expr("deliveries + 1")})
	if res.Error != nil {
		return nil, dbErr(res.Error, "command")
	}
	if res.RowsAffected == 0 {
		if _, err := s.GetCommand(ctx, id); err != nil {
			return nil, err
		}
		return nil, mdmd.Errorf(mdmd.EConflict, "command %s is not queued", id)
	}
	return s.GetCommand(ctx, id)
}

// GetCommandByExternalID finds a command by its platform ID.
func (s *Store) GetCommandByExternalID(ctx context.Context, externalID string) (*mdmd.Command, error) {
	var c mdmd.Command
	err := s.table(ctx, "commands").Where("external_id = ?", externalID).Take(&c).Error
	return &c, dbErr(err, "command")
}

// FinishCommand gives a sent command its final status (a platform result
// that does not come from the device itself).
func (s *Store) FinishCommand(ctx context.Context, id string, r mdmd.CommandResult) (*mdmd.Command, error) {
	if !r.Status.Final() {
		return nil, mdmd.FieldError("status", "%q is not final", r.Status)
	}
	now := s.Now()
	res := s.table(ctx, "commands").Where("id = ? AND status IN ?", id, activeStatuses).
		Updates(map[string]any{"status": string(r.Status), "result": r.Raw, "error": r.Error, "updated_at": now, "completed_at": now})
	if res.Error != nil {
		return nil, dbErr(res.Error, "command")
	}
	c, err := s.GetCommand(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 0 {
		return c, mdmd.Errorf(mdmd.EConflict, "command %s already has a final status (%s)", id, c.Status)
	}
	return c, nil
}

// PendingExternalCommands returns sent commands with a platform ID that
// have waited longer than olderThan (to ask the platform about them).
func (s *Store) PendingExternalCommands(ctx context.Context, olderThan time.Duration, limit int) ([]mdmd.Command, error) {
	var out []mdmd.Command
	err := s.table(ctx, "commands").Where("status = ? AND external_id IS NOT NULL AND sent_at < ?", mdmd.CommandSent,
		s.Now().Add(-olderThan)).Order("sent_at").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "commands")
}

// TakeRate counts one event against a limit of limit per window, shared by
// every replica. It reports whether the event fits and, if not, when the
// next window opens.
func (s *Store) TakeRate(ctx context.Context, name string, limit int, window time.Duration) (bool, time.Time, error) {
	now := s.Now()
	start := now.Truncate(window)
	var counts []int
	err := s.db.WithContext(ctx).Raw(`INSERT INTO rate_windows (name, window_start, count) VALUES (?, ?, 1)
ON CONFLICT (name, window_start) DO UPDATE SET count = rate_windows.count + 1 WHERE rate_windows.count < ?
RETURNING count`, name, start, limit).Scan(&counts).Error
	if err != nil {
		return false, time.Time{}, dbErr(err, "rate")
	}
	if len(counts) == 0 {
		return false, start.Add(window), nil
	}
	return true, time.Time{}, nil
}

// PruneRateWindows forgets windows that ended before the given time.
func (s *Store) PruneRateWindows(ctx context.Context, before time.Time) error {
	return dbErr(s.db.WithContext(ctx).Exec("DELETE FROM rate_windows WHERE window_start < ?", utc(before)).Error, "rate")
}
