package storage

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// auditLockKey is the PostgreSQL advisory lock that serialises appends to
// the audit chain across replicas ("mdmdaudt").
const auditLockKey = 0x6d646d6461756474

// AppendAudit appends an event to the hash chain, assigning its sequence
// number, time (when unset) and hashes. Appends are serialised so the chain
// never forks, also across replicas.
func (s *Store) AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error {
	if e.Action == "" || e.ActorType == "" || e.Outcome == "" {
		return mdmd.FieldError("audit", "action, actor type and outcome are required")
	}
	if e.At.IsZero() {
		e.At = s.Now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	return s.Tx(ctx, func(tx *Store) error {
		if tx.dialect == migrations.Postgres {
			if err := tx.db.WithContext(ctx).Exec("SELECT pg_advisory_xact_lock(?)", int64(auditLockKey)).Error; err != nil {
				return dbErr(err, "audit lock")
			}
		}
		var last mdmd.AuditEvent
		err := tx.table(ctx, "audit_events").Select("seq", "hash").Order("seq DESC").Take(&last).Error
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return dbErr(err, "audit event")
		}
		e.Seq = last.Seq + 1
		e.PrevHash = last.Hash
		e.Hash = e.ComputeHash(e.PrevHash)
		return dbErr(tx.table(ctx, "audit_events").Create(e).Error, "audit event")
	})
}

// ListAudit returns one page of audit events, newest first, and the cursor
// (a sequence number) of the next page, 0 on the last one.
func (s *Store) ListAudit(ctx context.Context, f mdmd.AuditFilter) ([]mdmd.AuditEvent, int64, error) {
	q := s.table(ctx, "audit_events")
	if f.Actor != "" {
		// Admins and tokens are recorded as "name (id)": a name finds them.
		q = q.Where("actor = ? OR actor LIKE ? ESCAPE '\\'", f.Actor, escapeLike(f.Actor)+" (%")
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.TargetID != "" {
		q = q.Where("target_id = ?", f.TargetID)
	}
	if !f.Since.IsZero() {
		q = q.Where("at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q = q.Where("at < ?", f.Until.UTC())
	}
	if f.Before > 0 {
		q = q.Where("seq < ?", f.Before)
	}
	limit := limitOf(f.Limit)
	var out []mdmd.AuditEvent
	if err := q.Order("seq DESC").Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, 0, dbErr(err, "audit events")
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].Seq
	}
	return out, next, nil
}

// AuditRange returns up to limit events with sequence numbers above after,
// oldest first: the order in which the chain is verified and exported.
func (s *Store) AuditRange(ctx context.Context, after int64, limit int) ([]mdmd.AuditEvent, error) {
	var out []mdmd.AuditEvent
	err := s.table(ctx, "audit_events").Where("seq > ?", after).Order("seq").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "audit events")
}

// AuditRangeBetween is AuditRange limited to entries at or after since and
// before until (either zero for no bound): what an export writes.
func (s *Store) AuditRangeBetween(ctx context.Context, after int64, since, until time.Time, limit int) ([]mdmd.AuditEvent, error) {
	q := s.table(ctx, "audit_events").Where("seq > ?", after)
	if !since.IsZero() {
		q = q.Where("at >= ?", since.UTC())
	}
	if !until.IsZero() {
		q = q.Where("at < ?", until.UTC())
	}
	var out []mdmd.AuditEvent
	err := q.Order("seq").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "audit events")
}
