package storage

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// lockFeed serialises writers of the compliance feed and the event log
// until commit on PostgreSQL, so that seq values commit in order. SQLite
// has one writer at a time. The lock is re-entrant within a transaction.
func (s *Store) lockFeed(ctx context.Context) error {
	if s.dialect != migrations.Postgres {
		return nil
	}
	return dbErr(s.db.WithContext(ctx).Exec("SELECT pg_advisory_xact_lock(?)", complianceFeedLock).Error, "event log")
}

// AppendEvent adds an event to the log. data is marshalled to JSON. Call
// it inside the transaction that makes the change the event reports.
func (s *Store) AppendEvent(ctx context.Context, typ, deviceID string, data any) error {
	ev, err := newEvent(typ, deviceID, s.Now(), data)
	if err != nil {
		return err
	}
	return s.Tx(ctx, func(tx *Store) error {
		if err := tx.lockFeed(ctx); err != nil {
			return err
		}
		return dbErr(tx.table(ctx, "events").Create(&ev).Error, "event log")
	})
}

func newEvent(typ, deviceID string, at time.Time, data any) (mdmd.Event, error) {
	if !slices.Contains(mdmd.EventTypes, typ) {
		return mdmd.Event{}, mdmd.FieldError("type", "unknown event type %q", typ)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return mdmd.Event{}, mdmd.Errorf(mdmd.EInvalid, "event data: %v", err)
	}
	return mdmd.Event{Type: typ, DeviceID: deviceID, Data: raw, At: at}, nil
}

// ListEvents returns up to limit events after seq, oldest first.
func (s *Store) ListEvents(ctx context.Context, after int64, limit int) ([]mdmd.Event, error) {
	var out []mdmd.Event
	err := s.table(ctx, "events").Where("seq > ?", after).Order("seq").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "event log")
}

// ConsumeEvents hands the events after the consumer's cursor (up to
// limit) to fn and advances the cursor past them, all in one transaction:
// what fn writes with tx and the cursor commit together, so an event is
// consumed exactly once however many replicas call this at once (they
// queue on the cursor's row). It returns how many events fn got.
func (s *Store) ConsumeEvents(ctx context.Context, consumer string, limit int, fn func(tx *Store, evs []mdmd.Event) error) (int, error) {
	if consumer == "" || len(consumer) > 100 {
		return 0, mdmd.FieldError("consumer", "must be 1 to 100 characters")
	}
	n := 0
	err := s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		err := tx.table(ctx, "event_cursors").Clauses(clause.OnConflict{DoNothing: true}).
			Create(map[string]any{"consumer": consumer, "seq": 0, "updated_at": now}).Error
		if err != nil {
			return dbErr(err, "event cursor")
		}
		lock := ""
		if tx.dialect == migrations.Postgres {
			lock = " FOR UPDATE"
		}
		var cursor []int64
		if err := tx.db.WithContext(ctx).Raw("SELECT seq FROM event_cursors WHERE consumer = ?"+lock, consumer).Scan(&cursor).Error; err != nil {
			return dbErr(err, "event cursor")
		}
		if len(cursor) != 1 {
			return mdmd.Errorf(mdmd.EInternal, "event cursor %q is missing", consumer)
		}
		evs, err := tx.ListEvents(ctx, cursor[0], limit)
		if err != nil || len(evs) == 0 {
			return err
		}
		if err := fn(tx, evs); err != nil {
			return err
		}
		n = len(evs)
		return dbErr(tx.table(ctx, "event_cursors").Where("consumer = ?", consumer).
			Updates(map[string]any{"seq": evs[len(evs)-1].Seq, "updated_at": now}).Error, "event cursor")
	})
	return n, err
}

// PruneEvents deletes events older than before that every consumer has
// read, and returns how many it deleted.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var minSeq []int64
	if err := s.db.WithContext(ctx).Raw("SELECT COALESCE(MIN(seq), 0) FROM event_cursors").Scan(&minSeq).Error; err != nil {
		return 0, dbErr(err, "event cursor")
	}
	q := s.table(ctx, "events").Where("at < ?", utc(before))
	if len(minSeq) == 1 {
		q = q.Where("seq <= ?", minSeq[0])
	}
	res := q.Delete(&mdmd.Event{})
	return res.RowsAffected, dbErr(res.Error, "event log")
}
