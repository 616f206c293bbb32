package storage

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// markDirty marks devices for compliance evaluation: their inputs
// changed. Call it in the transaction that changes them.
func (s *Store) markDirty(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.Now()
	vals := make([]string, len(ids))
	args := make([]any, 0, 2*len(ids))
	for i, id := range ids {
		vals[i] = "(?, 1, ?)"
		args = append(args, id, now)
	}
	err := s.db.WithContext(ctx).Exec(`INSERT INTO compliance_dirty (device_id, version, marked_at) VALUES `+
		strings.Join(vals, ", ")+` ON CONFLICT (device_id) DO UPDATE SET version = compliance_dirty.version + 1`,
		args...).Error
	return dbErr(err, "compliance mark")
}

// MarkComplianceDirty marks devices for compliance evaluation.
func (s *Store) MarkComplianceDirty(ctx context.Context, ids ...string) error {
	return s.markDirty(ctx, ids...)
}

// ClaimDirtyDevices claims up to limit marked devices, longest marked
// first, for lease: other evaluators skip them until the lease ends.
func (s *Store) ClaimDirtyDevices(ctx context.Context, limit int, lease time.Duration) ([]mdmd.DirtyMark, error) {
	now := s.Now()
	skip := ""
	if s.dialect == migrations.Postgres {
		skip = " FOR UPDATE SKIP LOCKED"
	}
	var out []mdmd.DirtyMark
	err := s.db.WithContext(ctx).Raw(`UPDATE compliance_dirty SET claimed_until = ? WHERE device_id IN (
    SELECT device_id FROM compliance_dirty WHERE claimed_until IS NULL OR claimed_until < ?
    ORDER BY marked_at LIMIT ?`+skip+`)
RETURNING device_id, version`, now.Add(lease), now, limitOf(limit)).Scan(&out).Error
	return out, dbErr(err, "compliance marks")
}

// ClearDirtyDevices removes claimed marks, except those marked again
// since they were claimed: those are released for the next evaluation.
func (s *Store) ClearDirtyDevices(ctx context.Context, marks []mdmd.DirtyMark) error {
	for chunk := range slices.Chunk(marks, 400) {
		conds := make([]string, len(chunk))
		args := make([]any, 0, 2*len(chunk))
		ids := make([]string, len(chunk))
		for i, m := range chunk {
			conds[i] = "(device_id = ? AND version = ?)"
			args = append(args, m.DeviceID, m.Version)
			ids[i] = m.DeviceID
		}
		err := s.Tx(ctx, func(tx *Store) error {
			if err := tx.db.WithContext(ctx).Exec("DELETE FROM compliance_dirty WHERE "+strings.Join(conds, " OR "), args...).Error; err != nil {
				return dbErr(err, "compliance marks")
			}
			return dbErr(tx.table(ctx, "compliance_dirty").Where("device_id IN ?", ids).Update("claimed_until", nil).Error, "compliance marks")
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DeviceIDsAfter returns up to limit device IDs greater than after, in
// order: a cursor over the whole fleet.
func (s *Store) DeviceIDsAfter(ctx context.Context, after string, limit int) ([]string, error) {
	var ids []string
	err := s.table(ctx, "devices").Where("id > ?", after).Order("id").Limit(limitOf(limit)).Pluck("id", &ids).Error
	return ids, dbErr(err, "devices")
}

// ComplianceInputs reads what evaluating each of the devices needs, in a
// fixed number of queries however many devices there are. Devices that
// do not exist are left out; the rest keep the order of ids.
func (s *Store) ComplianceInputs(ctx context.Context, ids []string) ([]mdmd.ComplianceInput, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// The rows are scanned by hand: a sweep reads the whole fleet, and
	// gorm's reflection cost more than the evaluation.
	byID := make(map[string]*mdmd.ComplianceInput, len(ids))
	err := s.scanRows(ctx, func(scan func(...any) error) error {
		in := &mdmd.ComplianceInput{}
		d := &in.Device
		if err := scan(&d.ID, &d.Platform, &d.Name, &d.SerialNumber, &d.OwnerUser, &d.Ownership, &d.EnrollmentState,
			&d.OSVersion, &d.LastSeenAt); err != nil {
			return err
		}
		if d.Platform == mdmd.PlatformIOS {
			in.Profiles = []string{}
		}
		byID[d.ID] = in
		return nil
	}, `SELECT id, platform, name, serial_number, owner_user, ownership, enrollment_state, os_version, last_seen_at
FROM devices WHERE id IN ?`, ids)
	if err != nil {
		return nil, dbErr(err, "devices")
	}
	err = s.scanRows(ctx, func(scan func(...any) error) error {
		var p mdmd.Posture
		if err := scan(&p.DeviceID, &p.OSVersion, &p.BuildVersion, &p.SecurityPatch, &p.PasscodePresent, &p.PasscodeCompliant,
			&p.Encrypted, &p.Supervised, &p.ActivationLock, &p.Compromised, &p.Details, &p.ObservedAt, &p.UpdatedAt); err != nil {
			return err
		}
		if in := byID[p.DeviceID]; in != nil {
			in.Posture = &p
		}
		return nil
	}, `SELECT device_id, os_version, build_version, security_patch, passcode_present, passcode_compliant,
    encrypted, supervised, activation_lock, compromised, details, observed_at, updated_at
FROM device_postures WHERE device_id IN ?`, ids)
	if err != nil {
		return nil, dbErr(err, "postures")
	}
	err = s.scanRows(ctx, func(scan func(...any) error) error {
		var id, identifier string
		if err := scan(&id, &identifier); err != nil {
			return err
		}
		if in := byID[id]; in != nil && in.Profiles != nil {
			in.Profiles = append(in.Profiles, identifier)
		}
		return nil
	}, "SELECT device_id, identifier FROM device_profiles WHERE device_id IN ? AND state = 'installed' ORDER BY identifier", ids)
	if err != nil {
		return nil, dbErr(err, "device profiles")
	}
	err = s.scanRows(ctx, func(scan func(...any) error) error {
		var t mdmd.DeviceThreat
		if err := scan(&t.DeviceID, &t.Level, &t.Compromised, &t.Source, &t.Details, &t.ReportedBy, &t.ReportedAt, &t.HeartbeatAt); err != nil {
			return err
		}
		if in := byID[t.DeviceID]; in != nil {
			in.Threat = &t
		}
		return nil
	}, `SELECT device_id, level, compromised, source, details, reported_by, reported_at, heartbeat_at
FROM device_threats WHERE device_id IN ?`, ids)
	if err != nil {
		return nil, dbErr(err, "threats")
	}
	err = s.scanRows(ctx, func(scan func(...any) error) error {
		var c mdmd.DeviceCompliance
		if err := scanCompliance(scan, &c); err != nil {
			return err
		}
		if in := byID[c.DeviceID]; in != nil {
			in.Current = &c
		}
		return nil
	}, complianceColumns+" FROM device_compliance WHERE device_id IN ?", ids)
	if err != nil {
		return nil, dbErr(err, "compliance states")
	}
	if err := s.choosePolicies(ctx, ids, byID); err != nil {
		return nil, err
	}
	out := make([]mdmd.ComplianceInput, 0, len(byID))
	for _, id := range ids {
		if in := byID[id]; in != nil {
			out = append(out, *in)
			delete(byID, id) // a repeated ID is given once
		}
	}
	return out, nil
}

const complianceColumns = `SELECT device_id, state, policy_id, reason, rules, failing_since, grace_ends_at, evaluated_at, changed_at`

func scanCompliance(scan func(...any) error, c *mdmd.DeviceCompliance) error {
	return scan(&c.DeviceID, &c.State, &c.PolicyID, &c.Reason, &c.Rules, &c.FailingSince, &c.GraceEndsAt, &c.EvaluatedAt, &c.ChangedAt)
}

// choosePolicies sets each device's policy: the one assigned to its groups
// with the lowest priority number (for its platform or every platform),
// else its platform's default, else the default for every platform.
func (s *Store) choosePolicies(ctx context.Context, ids []string, byID map[string]*mdmd.ComplianceInput) error {
	var policies []mdmd.CompliancePolicy
	if err := s.table(ctx, "compliance_policies").Find(&policies).Error; err != nil {
		return dbErr(err, "compliance policies")
	}
	if len(policies) == 0 {
		return nil
	}
	pol := make(map[string]*mdmd.CompliancePolicy, len(policies))
	defaults := map[mdmd.Platform]*mdmd.CompliancePolicy{}
	for i := range policies {
		p := &policies[i]
		pol[p.ID] = p
		if p.IsDefault {
			defaults[p.Platform] = p
		}
	}
	var assigned []struct{ DeviceID, PolicyID string }
	err := s.db.WithContext(ctx).Raw(`SELECT g.device_id, a.policy_id FROM device_groups g
JOIN compliance_policy_groups a ON a.group_id = g.group_id
JOIN compliance_policies p ON p.id = a.policy_id
JOIN devices d ON d.id = g.device_id
WHERE g.device_id IN ? AND p.platform IN ('', d.platform)
ORDER BY g.device_id, a.priority, p.name, p.id`, ids).Scan(&assigned).Error
	if err != nil {
		return dbErr(err, "compliance policy assignments")
	}
	for _, a := range assigned {
		if in := byID[a.DeviceID]; in != nil && in.Policy == nil {
			in.Policy = pol[a.PolicyID]
		}
	}
	for _, in := range byID {
		if in.Policy != nil {
			continue
		}
		if p := defaults[in.Device.Platform]; p != nil {
			in.Policy = p
		} else {
			in.Policy = defaults[""]
		}
	}
	return nil
}

// scanRows runs a query and calls fn for every row with its Scan.
func (s *Store) scanRows(ctx context.Context, fn func(scan func(...any) error) error, query string, args ...any) error {
	rows, err := s.db.WithContext(ctx).Raw(query, args...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// sameEvaluation reports whether an evaluation says exactly what the
// stored one says, apart from when it was made.
func sameEvaluation(cur, row *mdmd.DeviceCompliance) bool {
	eqTime := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	return cur.State == row.State && cur.PolicyID == row.PolicyID && cur.Reason == row.Reason &&
		string(cur.Rules) == string(row.Rules) && eqTime(cur.FailingSince, row.FailingSince) && eqTime(cur.GraceEndsAt, row.GraceEndsAt)
}

// RecordCompliances stores evaluated compliance states for many devices
// in one transaction. A state that differs from the stored one (or the
// first state) is appended to the change feed and the event log. An
// evaluation older (by EvaluatedAt) than the stored one is not stored:
// evaluators take the time before they read, so the newer reading always
// wins a race. Devices deleted meanwhile are skipped (Stale).
func (s *Store) RecordCompliances(ctx context.Context, rows []*mdmd.DeviceCompliance, cause string) ([]mdmd.ComplianceRecorded, error) {
	if cause == "" || len(cause) > 200 {
		return nil, mdmd.FieldError("cause", "must be 1 to 200 characters")
	}
	ids := make([]string, len(rows))
	for i, c := range rows {
		switch {
		case c.DeviceID == "":
			return nil, mdmd.FieldError("device_id", "required")
		case !slices.Contains(mdmd.ComplianceStates, c.State):
			return nil, mdmd.FieldError("state", "unknown compliance state %q", c.State)
		}
		ids[i] = c.DeviceID
	}
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		return nil, mdmd.FieldError("device_id", "a device appears twice in one batch")
	}
	out := make([]mdmd.ComplianceRecorded, len(rows))
	var stored []*mdmd.DeviceCompliance
	err := s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		stored = stored[:0]
		// Writers take turns per device. On PostgreSQL each locks the
		// device's state row, or, for a device without one yet, the
		// device's row (then the state row a rival may have inserted
		// meanwhile). Locks are taken state rows first, each kind in ID
		// order, so writers cannot deadlock. A sweep's touches lock only
		// the rows they update anyway. SQLite has one writer at a time.
		lock := ""
		if tx.dialect == migrations.Postgres {
			lock = " FOR NO KEY UPDATE"
		}
		// The reads scan by hand: in a sweep of the whole fleet, gorm's
		// reflection here cost as much as the evaluation itself.
		curByID := make(map[string]*mdmd.DeviceCompliance, len(ids))
		readStates := func(ids []string) error {
			return tx.scanRows(ctx, func(scan func(...any) error) error {
				var c mdmd.DeviceCompliance
				if err := scanCompliance(scan, &c); err != nil {
					return err
				}
				curByID[c.DeviceID] = &c
				return nil
			}, complianceColumns+" FROM device_compliance WHERE device_id IN ? ORDER BY device_id"+lock, ids)
		}
		if err := readStates(ids); err != nil {
			return dbErr(err, "compliance states")
		}
		devByID := make(map[string]*mdmd.Device, len(ids))
		readDevices := func(ids []string, lock string) error {
			if len(ids) == 0 {
				return nil
			}
			return tx.scanRows(ctx, func(scan func(...any) error) error {
				var d mdmd.Device
				if err := scan(&d.ID, &d.Platform, &d.Name, &d.SerialNumber, &d.OwnerUser); err != nil {
					return err
				}
				devByID[d.ID] = &d
				return nil
			}, "SELECT id, platform, name, serial_number, owner_user FROM devices WHERE id IN ? ORDER BY id"+lock, ids)
		}
		var fresh []string
		for _, id := range ids {
			if curByID[id] == nil {
				fresh = append(fresh, id)
			}
		}
		if len(fresh) > 0 {
			if err := readDevices(fresh, lock); err != nil {
				return dbErr(err, "devices")
			}
			if err := readStates(fresh); err != nil {
				return dbErr(err, "compliance states")
			}
		}
		// A state row means the device exists (deleting a device deletes
		// its state); the devices of changes are read below.
		exists := func(id string) bool { return curByID[id] != nil || devByID[id] != nil }
		var writes []*mdmd.DeviceCompliance
		touch := map[time.Time][]string{}
		var changes []mdmd.ComplianceChange
		var events []mdmd.Event
		var changed []int // indexes into rows
		written := make([]*mdmd.DeviceCompliance, len(rows))
		for i, c := range rows {
			out[i] = mdmd.ComplianceRecorded{}
			row := *c
			if len(row.Rules) == 0 {
				row.Rules = mdmd.RawJSON("[]")
			}
			row.EvaluatedAt = utc(row.EvaluatedAt)
			if row.EvaluatedAt.IsZero() {
				row.EvaluatedAt = now
			}
			row.FailingSince, row.GraceEndsAt = utcPtr(row.FailingSince), utcPtr(row.GraceEndsAt)
			if !exists(row.DeviceID) {
				out[i].Stale = true
				continue
			}
			if cur := curByID[row.DeviceID]; cur != nil {
				out[i].Previous = cur.State
				if row.EvaluatedAt.Before(cur.EvaluatedAt) {
					out[i].Stale = true
					continue
				}
				out[i].Changed = cur.State != row.State
				row.ChangedAt = cur.ChangedAt
				if sameEvaluation(cur, &row) {
					// Most of a sweep: only the evaluation time moves.
					touch[row.EvaluatedAt] = append(touch[row.EvaluatedAt], row.DeviceID)
					stored = append(stored, &row)
					continue
				}
			} else {
				out[i].Changed = true
			}
			// Rules are checked only when written: rules equal to the
			// stored ones (most of a sweep) were checked when stored.
			if !json.Valid(row.Rules) {
				return mdmd.FieldError("rules", "not JSON")
			}
			if out[i].Changed {
				row.ChangedAt = now
				changed = append(changed, i)
			}
			writes = append(writes, &row)
			written[i] = &row
		}
		// The changes go to the feed and the event log with the device's
		// identity.
		var need []string
		for _, i := range changed {
			if devByID[rows[i].DeviceID] == nil {
				need = append(need, rows[i].DeviceID)
			}
		}
		if err := readDevices(need, ""); err != nil {
			return dbErr(err, "devices")
		}
		for _, i := range changed {
			row := written[i]
			d := devByID[row.DeviceID]
			if d == nil {
				return mdmd.Errorf(mdmd.EConflict, "device %s was deleted while it was evaluated", row.DeviceID)
			}
			changes = append(changes, mdmd.ComplianceChange{DeviceID: row.DeviceID, FromState: out[i].Previous, ToState: row.State,
				PolicyID: row.PolicyID, Reason: row.Reason, Rules: row.Rules, Cause: cause, At: now})
			ev, err := newEvent(mdmd.EventComplianceChanged, row.DeviceID, now, mdmd.ComplianceChangedData{
				EventDevice: mdmd.NewEventDevice(d), PreviousState: out[i].Previous, CurrentState: row.State,
				PolicyID: row.PolicyID, Reason: row.Reason, FailedRules: failedRules(row.Rules), Cause: cause, EvaluatedAt: row.EvaluatedAt})
			if err != nil {
				return err
			}
			events = append(events, ev)
		}
		if len(writes) > 0 {
			if err := tx.table(ctx, "device_compliance").Clauses(clause.OnConflict{UpdateAll: true}).CreateInBatches(writes, 500).Error; err != nil {
				return dbErr(err, "compliance states")
			}
		}
		for at, ids := range touch {
			if err := tx.table(ctx, "device_compliance").Where("device_id IN ?", ids).Update("evaluated_at", at).Error; err != nil {
				return dbErr(err, "compliance states")
			}
		}
		stored = append(stored, writes...)
		if len(changes) == 0 {
			return nil
		}
		if err := tx.lockFeed(ctx); err != nil {
			return err
		}
		if err := tx.table(ctx, "compliance_changes").CreateInBatches(changes, 500).Error; err != nil {
			return dbErr(err, "compliance feed")
		}
		return dbErr(tx.table(ctx, "events").CreateInBatches(events, 500).Error, "event log")
	})
	if err != nil {
		return nil, err
	}
	// Hand back what was stored (times normalised, changed_at set).
	byID := make(map[string]*mdmd.DeviceCompliance, len(stored))
	for _, w := range stored {
		byID[w.DeviceID] = w
	}
	for _, c := range rows {
		if w := byID[c.DeviceID]; w != nil {
			*c = *w
		}
	}
	return out, nil
}
