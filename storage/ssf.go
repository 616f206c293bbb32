package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// ssfStreamsLock is the PostgreSQL advisory lock that stream creators
// hold until commit, so that the per-receiver stream limit holds under
// concurrent creates. SQLite has one writer at a time.
const ssfStreamsLock = 0x6d646d6473736673

// ssfChunk bounds the IN lists of bulk updates.
const ssfChunk = 500

var ssfSubjectFormats = []string{"complex", "email", "iss_sub", "opaque"}

func validSSFStream(st *mdmd.SSFStream) error {
	switch {
	case st.ID == "" || len(st.ID) > 100:
		return mdmd.FieldError("stream_id", "must be 1 to 100 characters")
	case st.OwnerID == "":
		return mdmd.FieldError("owner_id", "required")
	case len(st.Aud) == 0 || !json.Valid(st.Aud):
		return mdmd.FieldError("aud", "must be JSON")
	case st.DeliveryMethod != mdmd.SSFDeliveryPush && st.DeliveryMethod != mdmd.SSFDeliveryPoll:
		return mdmd.FieldError("delivery.method", "unsupported delivery method %q", st.DeliveryMethod)
	case st.DeliveryMethod == mdmd.SSFDeliveryPush && st.EndpointURL == "":
		return mdmd.FieldError("delivery.endpoint_url", "required for push delivery")
	case len(st.EventsRequested) > 0 && !json.Valid(st.EventsRequested):
		return mdmd.FieldError("events_requested", "must be JSON")
	case len(st.EventsDelivered) == 0 || !json.Valid(st.EventsDelivered):
		return mdmd.FieldError("events_delivered", "must be JSON")
	case !slices.Contains(ssfSubjectFormats, st.SubjectFormat):
		return mdmd.FieldError("subject_format", "unknown subject format %q", st.SubjectFormat)
	case !slices.Contains(mdmd.SSFStatuses, st.Status):
		return mdmd.FieldError("status", "unknown status %q", st.Status)
	case st.StatusBy != mdmd.SSFStatusByReceiver && st.StatusBy != mdmd.SSFStatusByAdmin:
		return mdmd.FieldError("status_by", "unknown status setter %q", st.StatusBy)
	}
	return nil
}

// ssfOwnerLive is the condition, on a stream aliased s, that its owner
// is not a revoked or expired API token: a dead receiver's streams take
// no events and are not pushed (nor can it poll: its token no longer
// authenticates). The owner is the principal that created the stream,
// an API token of role ssf_receiver; a stream whose owner is not a
// token at all is not affected. Its one argument is the time now.
const ssfOwnerLive = `NOT EXISTS (SELECT 1 FROM api_tokens k WHERE k.id = s.owner_id AND (k.revoked_at IS NOT NULL OR k.expires_at <= ?))`

func (s *Store) forUpdate() string {
	if s.dialect == migrations.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

func (s *Store) skipLocked() string {
	if s.dialect == migrations.Postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// CreateSSFStream stores a new stream. A receiver that already has
// maxPerOwner streams gets a conflict (0 means no limit).
func (s *Store) CreateSSFStream(ctx context.Context, st *mdmd.SSFStream, maxPerOwner int) error {
	if st.ID == "" {
		st.ID = newID()
	}
	if st.Status == "" {
		st.Status = mdmd.SSFStatusEnabled
	}
	if st.StatusBy == "" {
		st.StatusBy = mdmd.SSFStatusByReceiver
	}
	if err := validSSFStream(st); err != nil {
		return err
	}
	return s.Tx(ctx, func(tx *Store) error {
		if tx.dialect == migrations.Postgres {
			if err := tx.db.WithContext(ctx).Exec("SELECT pg_advisory_xact_lock(?)", ssfStreamsLock).Error; err != nil {
				return dbErr(err, "stream")
			}
		}
		if maxPerOwner > 0 {
			var n int64
			if err := tx.table(ctx, "ssf_streams").Where("owner_id = ?", st.OwnerID).Count(&n).Error; err != nil {
				return dbErr(err, "streams")
			}
			if n >= int64(maxPerOwner) {
				return mdmd.Errorf(mdmd.EConflict, "this receiver already has %d streams, the most it may have; update or delete one", n)
			}
		}
		now := tx.Now()
		st.CreatedAt, st.UpdatedAt, st.PushNextAt = now, now, now
		st.PushLeaseOwner, st.PushLeaseUntil, st.PushFailures, st.PushLastError = "", nil, 0, ""
		return dbErr(tx.table(ctx, "ssf_streams").Create(st).Error, "stream")
	})
}

// GetSSFStream returns a stream. With ownerID set, another receiver's
// stream is not found.
func (s *Store) GetSSFStream(ctx context.Context, ownerID, id string) (*mdmd.SSFStream, error) {
	var st mdmd.SSFStream
	q := s.table(ctx, "ssf_streams").Where("id = ?", id)
	if ownerID != "" {
		q = q.Where("owner_id = ?", ownerID)
	}
	if err := q.Take(&st).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, mdmd.Errorf(mdmd.ENotFound, "no stream %s", id)
		}
		return nil, dbErr(err, "stream")
	}
	return &st, nil
}

// ListSSFStreams returns a receiver's streams (every stream when ownerID
// is empty), oldest first.
func (s *Store) ListSSFStreams(ctx context.Context, ownerID string) ([]mdmd.SSFStream, error) {
	q := s.table(ctx, "ssf_streams")
	if ownerID != "" {
		q = q.Where("owner_id = ?", ownerID)
	}
	var out []mdmd.SSFStream
	err := q.Order("created_at, id").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "streams")
}

// UpdateSSFStream stores a stream's configuration (delivery, events,
// description, subject format and mode); owner, aud and status do not
// change. A change of delivery method puts SETs awaiting a poll
// acknowledgement back in the queue; clearSubjects removes the stream's
// subjects (its subject mode changed).
func (s *Store) UpdateSSFStream(ctx context.Context, st *mdmd.SSFStream, clearSubjects bool) error {
	return s.Tx(ctx, func(tx *Store) error {
		var cur []mdmd.SSFStream
		if err := tx.db.WithContext(ctx).Raw("SELECT * FROM ssf_streams WHERE id = ? AND owner_id = ?"+tx.forUpdate(), st.ID, st.OwnerID).Scan(&cur).Error; err != nil {
			return dbErr(err, "stream")
		}
		if len(cur) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no stream %s", st.ID)
		}
		st.Aud, st.Status, st.StatusReason, st.StatusBy, st.CreatedAt = cur[0].Aud, cur[0].Status, cur[0].StatusReason, cur[0].StatusBy, cur[0].CreatedAt
		if err := validSSFStream(st); err != nil {
			return err
		}
		now := tx.Now()
		var reqs any
		if len(st.EventsRequested) > 0 {
			reqs = string(st.EventsRequested)
		}
		err := tx.table(ctx, "ssf_streams").Where("id = ?", st.ID).Updates(map[string]any{
			"delivery_method": st.DeliveryMethod, "endpoint_url": st.EndpointURL, "auth_header_enc": st.AuthHeaderSealed,
			"events_requested": reqs, "events_delivered": string(st.EventsDelivered), "description": st.Description,
			"subject_format": st.SubjectFormat, "all_subjects": st.AllSubjects, "push_next_at": now, "push_failures": 0,
			"push_last_error": "", "updated_at": now}).Error
		if err != nil {
			return dbErr(err, "stream")
		}
		if cur[0].DeliveryMethod != st.DeliveryMethod {
			err := tx.table(ctx, "ssf_sets").Where("stream_id = ? AND state = ?", st.ID, mdmd.SETOutstanding).
				Updates(map[string]any{"state": mdmd.SETPending, "next_at": now}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		if clearSubjects {
			if err := tx.table(ctx, "ssf_subjects").Where("stream_id = ?", st.ID).Delete(&mdmd.SSFSubject{}).Error; err != nil {
				return dbErr(err, "stream subjects")
			}
		}
		got, err := tx.GetSSFStream(ctx, st.OwnerID, st.ID)
		if err != nil {
			return err
		}
		*st = *got
		return nil
	})
}

// DeleteSSFStream removes a stream with its subjects and queued SETs.
func (s *Store) DeleteSSFStream(ctx context.Context, ownerID, id string) error {
	q := s.table(ctx, "ssf_streams").Where("id = ?", id)
	if ownerID != "" {
		q = q.Where("owner_id = ?", ownerID)
	}
	res := q.Delete(&mdmd.SSFStream{})
	if res.Error != nil {
		return dbErr(res.Error, "stream")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "no stream %s", id)
	}
	return nil
}

// SetSSFStreamStatus changes a stream's status on behalf of by
// (mdmd.SSFStatusByReceiver or mdmd.SSFStatusByAdmin) and records who set
// it. While an administrator's pause or disable is in force, a receiver's
// change is EForbidden; an administrator may change it, and an
// administrator's enable hands the status back to the receiver.
// Disabling drops the SETs the stream holds; enabling makes its held SETs
// due at once. control, if given, is queued in the same transaction after
// the drop (a stream-updated SET, which is delivered whatever the status).
func (s *Store) SetSSFStreamStatus(ctx context.Context, ownerID, id, status, reason, by string, control *mdmd.SSFSet) (*mdmd.SSFStream, error) {
	if !slices.Contains(mdmd.SSFStatuses, status) {
		return nil, mdmd.FieldError("status", "must be enabled, paused or disabled, got %q", status)
	}
	if by != mdmd.SSFStatusByReceiver && by != mdmd.SSFStatusByAdmin {
		return nil, mdmd.FieldError("status_by", "must be %q or %q, got %q", mdmd.SSFStatusByReceiver, mdmd.SSFStatusByAdmin, by)
	}
	if len(reason) > 500 {
		return nil, mdmd.FieldError("reason", "at most 500 characters")
	}
	var out *mdmd.SSFStream
	err := s.Tx(ctx, func(tx *Store) error {
		q := "SELECT * FROM ssf_streams WHERE id = ?"
		args := []any{id}
		if ownerID != "" {
			q += " AND owner_id = ?"
			args = append(args, ownerID)
		}
		var cur []mdmd.SSFStream
		if err := tx.db.WithContext(ctx).Raw(q+tx.forUpdate(), args...).Scan(&cur).Error; err != nil {
			return dbErr(err, "stream")
		}
		if len(cur) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no stream %s", id)
		}
		if c := cur[0]; by == mdmd.SSFStatusByReceiver && c.StatusBy == mdmd.SSFStatusByAdmin && c.Status != mdmd.SSFStatusEnabled {
			why := ""
			if c.StatusReason != "" {
				why = " (" + c.StatusReason + ")"
			}
			return mdmd.Errorf(mdmd.EForbidden, "stream %s was %s by an administrator%s: only an administrator can change its status", id, c.Status, why)
		}
		now := tx.Now()
		upd := map[string]any{"status": status, "status_reason": reason, "status_by": by, "updated_at": now}
		if status == mdmd.SSFStatusEnabled {
			upd["push_next_at"] = now
		}
		if err := tx.table(ctx, "ssf_streams").Where("id = ?", id).Updates(upd).Error; err != nil {
			return dbErr(err, "stream")
		}
		if status == mdmd.SSFStatusDisabled {
			err := tx.table(ctx, "ssf_sets").Where("stream_id = ? AND state IN ? AND NOT control", id,
				[]string{mdmd.SETPending, mdmd.SETOutstanding}).Delete(&mdmd.SSFSet{}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		if control != nil {
			control.StreamID, control.Control = id, true
			if err := tx.EnqueueSSFSets(ctx, []mdmd.SSFSet{*control}); err != nil {
				return err
			}
		}
		var err error
		out, err = tx.GetSSFStream(ctx, "", id)
		return err
	})
	return out, err
}

// AddSSFSubject adds a subject to a receiver's stream. On a stream that
// has every subject, it takes the subject off the exclusions instead. A
// stream holds at most maxRows subject rows (0: no limit): one more is
// EConflict.
func (s *Store) AddSSFSubject(ctx context.Context, ownerID string, sub *mdmd.SSFSubject, maxRows int) error {
	return s.subjectChange(ctx, ownerID, sub, true, maxRows)
}

// RemoveSSFSubject removes a subject from a receiver's stream. On a
// stream that has every subject, it excludes the subject instead (an
// exclusion is a row, under the same maxRows). Removing a subject the
// stream does not have is no error.
func (s *Store) RemoveSSFSubject(ctx context.Context, ownerID string, sub *mdmd.SSFSubject, maxRows int) error {
	return s.subjectChange(ctx, ownerID, sub, false, maxRows)
}

func (s *Store) subjectChange(ctx context.Context, ownerID string, sub *mdmd.SSFSubject, add bool, maxRows int) error {
	switch {
	case sub.DeviceKey == "" && sub.UserKey == "":
		return mdmd.FieldError("subject", "names no device or user")
	case len(sub.DeviceKey) > 500 || len(sub.UserKey) > 500:
		return mdmd.FieldError("subject", "identifiers are at most 500 characters")
	case len(sub.Subject) == 0 || !json.Valid(sub.Subject):
		return mdmd.FieldError("subject", "must be JSON")
	}
	return s.Tx(ctx, func(tx *Store) error {
		// The stream row is locked so that concurrent adds cannot pass the
		// row limit together.
		var cur []mdmd.SSFStream
		if err := tx.db.WithContext(ctx).Raw("SELECT * FROM ssf_streams WHERE id = ? AND owner_id = ?"+tx.forUpdate(),
			sub.StreamID, ownerID).Scan(&cur).Error; err != nil {
			return dbErr(err, "stream")
		}
		if len(cur) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no stream %s", sub.StreamID)
		}
		keep := add != cur[0].AllSubjects // a row is an inclusion, or on an all-subjects stream an exclusion
		where := tx.table(ctx, "ssf_subjects").Where("stream_id = ? AND device_key = ? AND user_key = ?", sub.StreamID, sub.DeviceKey, sub.UserKey)
		if !keep {
			return dbErr(where.Delete(&mdmd.SSFSubject{}).Error, "stream subject")
		}
		if maxRows > 0 {
			var have []string
			if err := tx.table(ctx, "ssf_subjects").Where("stream_id = ? AND device_key = ? AND user_key = ?", sub.StreamID, sub.DeviceKey, sub.UserKey).
				Limit(1).Pluck("stream_id", &have).Error; err != nil {
				return dbErr(err, "stream subjects")
			}
			if len(have) == 0 {
				var n int64
				if err := tx.table(ctx, "ssf_subjects").Where("stream_id = ?", sub.StreamID).Count(&n).Error; err != nil {
					return dbErr(err, "stream subjects")
				}
				if n >= int64(maxRows) {
					what := "subjects"
					if cur[0].AllSubjects {
						what = "excluded subjects"
					}
					return mdmd.Errorf(mdmd.EConflict, "stream %s already has %d %s, the most a stream may have; remove some first", sub.StreamID, n, what)
				}
			}
		}
		sub.CreatedAt = tx.Now()
		err := tx.table(ctx, "ssf_subjects").Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "stream_id"}, {Name: "device_key"}, {Name: "user_key"}},
			DoUpdates: clause.AssignmentColumns([]string{"subject"}),
		}).Create(sub).Error
		return dbErr(err, "stream subject")
	})
}

// ListSSFSubjects returns a stream's subject rows.
func (s *Store) ListSSFSubjects(ctx context.Context, streamID string) ([]mdmd.SSFSubject, error) {
	var out []mdmd.SSFSubject
	err := s.table(ctx, "ssf_subjects").Where("stream_id = ?", streamID).Order("device_key, user_key").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "stream subjects")
}

// SSFFanoutStreams returns the streams that take new events: the enabled
// and the paused ones whose owner's token is neither revoked nor expired.
// Called in a transaction, it holds them (FOR SHARE on PostgreSQL) until
// commit, so a status change that races the fan-out waits for it and then
// drops what it queued, instead of leaving SETs on a disabled stream.
// SQLite runs one write transaction at a time.
func (s *Store) SSFFanoutStreams(ctx context.Context) ([]mdmd.SSFStream, error) {
	lock := ""
	if s.dialect == migrations.Postgres {
		lock = " FOR SHARE"
	}
	var out []mdmd.SSFStream
	err := s.db.WithContext(ctx).Raw("SELECT * FROM ssf_streams s WHERE s.status IN ? AND "+ssfOwnerLive+" ORDER BY s.id"+lock,
		[]string{mdmd.SSFStatusEnabled, mdmd.SSFStatusPaused}, s.Now()).Scan(&out).Error
	return out, dbErr(err, "streams")
}

// MatchSSFSubjects returns the subject rows of the given streams that
// name one of the devices or users; the caller checks that both keys of
// a row fit one event.
func (s *Store) MatchSSFSubjects(ctx context.Context, streamIDs, deviceKeys, userKeys []string) ([]mdmd.SSFSubject, error) {
	if len(streamIDs) == 0 || (len(deviceKeys) == 0 && len(userKeys) == 0) {
		return nil, nil
	}
	if len(deviceKeys) == 0 {
		deviceKeys = []string{""}
	}
	if len(userKeys) == 0 {
		userKeys = []string{""}
	}
	var out []mdmd.SSFSubject
	err := s.table(ctx, "ssf_subjects").Select("stream_id, device_key, user_key").
		Where("stream_id IN ? AND ((device_key <> '' AND device_key IN ?) OR (user_key <> '' AND user_key IN ?))", streamIDs, deviceKeys, userKeys).
		Find(&out).Error
	return out, dbErr(err, "stream subjects")
}

// EnqueueSSFSets queues SETs. Each needs a unique jti, a stream and claims.
func (s *Store) EnqueueSSFSets(ctx context.Context, sets []mdmd.SSFSet) error {
	if len(sets) == 0 {
		return nil
	}
	now := s.Now()
	for i := range sets {
		st := &sets[i]
		switch {
		case st.JTI == "" || len(st.JTI) > 100:
			return mdmd.FieldError("jti", "must be 1 to 100 characters")
		case st.StreamID == "" || st.EventType == "":
			return mdmd.FieldError("set", "stream and event type are required")
		case len(st.Claims) == 0 || !json.Valid(st.Claims):
			return mdmd.FieldError("claims", "must be JSON")
		}
		st.ID, st.State, st.Attempts, st.LastError, st.DoneAt = 0, mdmd.SETPending, 0, "", nil
		st.CreatedAt, st.NextAt = now, now
	}
	return dbErr(s.table(ctx, "ssf_sets").CreateInBatches(sets, 200).Error, "SET queue")
}

// RequestSSFVerification queues a verification SET on a receiver's
// stream unless the stream had one less than minInterval ago, which is
// ERateLimited. The check and the record are one statement, so replicas
// cannot both pass it.
func (s *Store) RequestSSFVerification(ctx context.Context, ownerID, streamID string, minInterval time.Duration, set *mdmd.SSFSet) error {
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		res := tx.table(ctx, "ssf_streams").
			Where("id = ? AND owner_id = ? AND (last_verification_at IS NULL OR last_verification_at <= ?)", streamID, ownerID, now.Add(-minInterval)).
			Updates(map[string]any{"last_verification_at": now})
		if res.Error != nil {
			return dbErr(res.Error, "stream")
		}
		if res.RowsAffected == 0 {
			if _, err := tx.GetSSFStream(ctx, ownerID, streamID); err != nil {
				return err
			}
			return mdmd.Errorf(mdmd.ERateLimited, "verification requested less than %d seconds ago (min_verification_interval)", int(minInterval.Seconds()))
		}
		set.StreamID = streamID
		return tx.EnqueueSSFSets(ctx, []mdmd.SSFSet{*set})
	})
}

// ClaimSSFPush leases up to streams push streams that have SETs due and
// returns each with up to perStream of them, oldest first: every SET of
// an enabled stream, only control SETs of a paused or disabled one.
// Streams whose owner's token is revoked or expired are not claimed. A
// stream is held by one claimer until FinishSSFPush or the lease ends;
// PostgreSQL claimers skip each other's rows. The claimer must stop
// sending before the lease ends (Transmitter.Push does).
func (s *Store) ClaimSSFPush(ctx context.Context, owner string, lease time.Duration, streams, perStream int) ([]mdmd.SSFPushBatch, error) {
	if owner == "" || streams <= 0 || perStream <= 0 || lease <= 0 {
		return nil, mdmd.FieldError("claim", "owner, counts and lease are required")
	}
	var out []mdmd.SSFPushBatch
	err := s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		var claimed []mdmd.SSFStream
		q := `UPDATE ssf_streams SET push_lease_owner = ?, push_lease_until = ? WHERE id IN (
SELECT s.id FROM ssf_streams s WHERE s.delivery_method = ? AND s.push_next_at <= ?
AND (s.push_lease_until IS NULL OR s.push_lease_until < ?)
AND EXISTS (SELECT 1 FROM ssf_sets t WHERE t.stream_id = s.id AND t.state = ? AND (t.control OR s.status = ?))
AND ` + ssfOwnerLive + `
ORDER BY s.push_next_at, s.id LIMIT ?` + tx.skipLocked() + `) RETURNING *`
		err := tx.db.WithContext(ctx).Raw(q, owner, now.Add(lease), mdmd.SSFDeliveryPush, now, now,
			mdmd.SETPending, mdmd.SSFStatusEnabled, now, streams).Scan(&claimed).Error
		if err != nil {
			return dbErr(err, "streams")
		}
		slices.SortFunc(claimed, func(a, b mdmd.SSFStream) int { return a.PushNextAt.Compare(b.PushNextAt) })
		for _, st := range claimed {
			var sets []mdmd.SSFSet
			err := tx.table(ctx, "ssf_sets").Where("stream_id = ? AND state = ? AND (control OR ?)", st.ID, mdmd.SETPending,
				st.Status == mdmd.SSFStatusEnabled).Order("id").Limit(perStream).Find(&sets).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
			out = append(out, mdmd.SSFPushBatch{Stream: st, Sets: sets})
		}
		return nil
	})
	return out, err
}

// SSFPushResult is what became of a claimed push batch.
type SSFPushResult struct {
	Delivered []int64          // the receiver answered 202
	Failed    map[int64]string // the receiver rejected them for good (400)
	Retry     []int64          // attempted, to be tried again
	// RetryAt, if set, defers the whole stream after a failed delivery;
	// Error says why.
	RetryAt *time.Time
	Error   string
}

// FinishSSFPush records a push batch's outcome and releases the stream.
// The SETs' states are recorded whoever holds the lease (a delivery that
// happened is never forgotten); the stream's schedule changes only under
// owner's lease.
func (s *Store) FinishSSFPush(ctx context.Context, owner, streamID string, r SSFPushResult) error {
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		for ids := range slices.Chunk(r.Delivered, ssfChunk) {
			err := tx.table(ctx, "ssf_sets").Where("id IN ? AND state IN ?", ids, []string{mdmd.SETPending, mdmd.SETOutstanding}).
				Updates(map[string]any{"state": mdmd.SETDelivered, "done_at": now, "attempts": gorm.Expr("attempts + 1")}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		for id, msg := range r.Failed {
			err := tx.table(ctx, "ssf_sets").Where("id = ? AND state IN ?", id, []string{mdmd.SETPending, mdmd.SETOutstanding}).
				Updates(map[string]any{"state": mdmd.SETFailed, "done_at": now, "last_error": truncate(msg, 500), "attempts": gorm.Expr("attempts + 1")}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		for ids := range slices.Chunk(r.Retry, ssfChunk) {
			err := tx.table(ctx, "ssf_sets").Where("id IN ? AND state = ?", ids, mdmd.SETPending).
				Updates(map[string]any{"last_error": truncate(r.Error, 500), "attempts": gorm.Expr("attempts + 1")}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		upd := map[string]any{"push_lease_owner": "", "push_lease_until": nil}
		if r.RetryAt != nil {
			upd["push_next_at"] = utc(*r.RetryAt)
			upd["push_failures"] = gorm.Expr("push_failures + 1")
			upd["push_last_error"] = truncate(r.Error, 500)
		} else if len(r.Delivered) > 0 {
			upd["push_failures"] = 0
			upd["push_last_error"] = ""
		}
		return dbErr(tx.table(ctx, "ssf_streams").Where("id = ? AND push_lease_owner = ?", streamID, owner).Updates(upd).Error, "stream")
	})
}

// PollSSFSets serves one RFC 8936 poll of a stream: it records the
// acknowledged SETs as delivered and the ones in errs as failed, then
// hands out up to max due SETs (pending ones, and outstanding ones not
// acknowledged within their timeout), oldest first, each outstanding
// for ackTimeout. more reports whether further SETs are due. A paused
// or disabled stream hands out only control SETs.
func (s *Store) PollSSFSets(ctx context.Context, streamID string, acks []string, errs map[string]string, max int, ackTimeout time.Duration) (sets []mdmd.SSFSet, more bool, err error) {
	err = s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		open := []string{mdmd.SETPending, mdmd.SETOutstanding}
		for jtis := range slices.Chunk(acks, ssfChunk) {
			err := tx.table(ctx, "ssf_sets").Where("stream_id = ? AND jti IN ? AND state IN ?", streamID, jtis, open).
				Updates(map[string]any{"state": mdmd.SETDelivered, "done_at": now}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		// The SETs a receiver reports bad, a statement per chunk: each gets
		// its own message through a CASE on the jti.
		jtis := slices.Sorted(maps.Keys(errs))
		for chunk := range slices.Chunk(jtis, ssfChunk) {
			var b strings.Builder
			args := make([]any, 0, 2*len(chunk))
			b.WriteString("CASE jti")
			for _, jti := range chunk {
				b.WriteString(" WHEN ? THEN ?")
				args = append(args, jti, truncate(errs[jti], 500))
			}
			b.WriteString(" END")
			err := tx.table(ctx, "ssf_sets").Where("stream_id = ? AND jti IN ? AND state IN ?", streamID, chunk, open).
				Updates(map[string]any{"state": mdmd.SETFailed, "done_at": now, "last_error": gorm.Expr(b.String(), args...)}).Error
			if err != nil {
				return dbErr(err, "SET queue")
			}
		}
		if max <= 0 {
			return nil
		}
		var status []string
		if err := tx.table(ctx, "ssf_streams").Where("id = ?", streamID).Pluck("status", &status).Error; err != nil {
			return dbErr(err, "stream")
		}
		if len(status) == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no stream %s", streamID)
		}
		enabled := status[0] == mdmd.SSFStatusEnabled
		due := "stream_id = ? AND (state = ? OR (state = ? AND next_at <= ?)) AND (control OR ?)"
		q := `UPDATE ssf_sets SET state = ?, next_at = ?, attempts = attempts + 1 WHERE id IN (
SELECT id FROM ssf_sets WHERE ` + due + ` ORDER BY id LIMIT ?` + tx.skipLocked() + `) RETURNING *`
		if err := tx.db.WithContext(ctx).Raw(q, mdmd.SETOutstanding, now.Add(ackTimeout), streamID, mdmd.SETPending,
			mdmd.SETOutstanding, now, enabled, max).Scan(&sets).Error; err != nil {
			return dbErr(err, "SET queue")
		}
		slices.SortFunc(sets, func(a, b mdmd.SSFSet) int { return cmp.Compare(a.ID, b.ID) })
		var next []int64
		if err := tx.table(ctx, "ssf_sets").Where(due, streamID, mdmd.SETPending, mdmd.SETOutstanding, now, enabled).
			Limit(1).Pluck("id", &next).Error; err != nil {
			return dbErr(err, "SET queue")
		}
		more = len(next) > 0
		return nil
	})
	return sets, more, err
}

// ListSSFSets returns up to limit SETs of a stream, oldest first.
func (s *Store) ListSSFSets(ctx context.Context, streamID string, limit int) ([]mdmd.SSFSet, error) {
	var out []mdmd.SSFSet
	err := s.table(ctx, "ssf_sets").Where("stream_id = ?", streamID).Order("id").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "SET queue")
}

// CountSSFSets counts a stream's SETs by state.
func (s *Store) CountSSFSets(ctx context.Context, streamID string) (map[string]int64, error) {
	var rows []struct {
		State string
		N     int64
	}
	err := s.table(ctx, "ssf_sets").Select("state, COUNT(*) AS n").Where("stream_id = ?", streamID).Group("state").Scan(&rows).Error
	out := map[string]int64{}
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out, dbErr(err, "SET queue")
}

// PruneSSFSets marks SETs still undelivered that were queued before
// expireBefore as expired, then deletes SETs finished before doneBefore.
func (s *Store) PruneSSFSets(ctx context.Context, doneBefore, expireBefore time.Time) (deleted, expired int64, err error) {
	now := s.Now()
	res := s.table(ctx, "ssf_sets").Where("state IN ? AND created_at < ?", []string{mdmd.SETPending, mdmd.SETOutstanding}, utc(expireBefore)).
		Updates(map[string]any{"state": mdmd.SETExpired, "done_at": now, "last_error": "undelivered past the retention"})
	if res.Error != nil {
		return 0, 0, dbErr(res.Error, "SET queue")
	}
	expired = res.RowsAffected
	res = s.table(ctx, "ssf_sets").Where("done_at IS NOT NULL AND done_at < ?", utc(doneBefore)).Delete(&mdmd.SSFSet{})
	return res.RowsAffected, expired, dbErr(res.Error, "SET queue")
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
