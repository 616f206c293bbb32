package storage

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// normWebhookEventTypes sorts and de-duplicates a subscription; nil becomes empty
// (all types), so the stored JSON is never null.
func normWebhookEventTypes(ts []string) []string {
	out := slices.Clone(ts)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// CreateWebhookEndpoint stores a new endpoint with its sealed secret. A
// taken name is a conflict, and so is one endpoint more than
// mdmd.MaxWebhookEndpoints.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *mdmd.WebhookEndpoint) error {
	e.EventTypes = normWebhookEventTypes(e.EventTypes)
	if err := e.Validate(); err != nil {
		return err
	}
	if len(e.SecretSealed) == 0 {
		return mdmd.FieldError("secret", "a sealed secret is required")
	}
	if e.ID == "" {
		e.ID = newID()
	}
	return s.Tx(ctx, func(tx *Store) error {
		var n int64
		if err := tx.table(ctx, "webhook_endpoints").Count(&n).Error; err != nil {
			return dbErr(err, "webhook endpoints")
		}
		if n >= mdmd.MaxWebhookEndpoints {
			return mdmd.Errorf(mdmd.EConflict, "there are already %d webhook endpoints, the most allowed", n)
		}
		now := tx.Now()
		e.CreatedAt, e.UpdatedAt, e.DisabledReason = now, now, ""
		e.PreviousSecretSealed, e.PreviousSecretUntil = nil, nil
		return dbErr(tx.table(ctx, "webhook_endpoints").Create(e).Error, "webhook endpoint")
	})
}

// GetWebhookEndpoint returns the endpoint with the given ID.
func (s *Store) GetWebhookEndpoint(ctx context.Context, id string) (*mdmd.WebhookEndpoint, error) {
	var e mdmd.WebhookEndpoint
	err := s.table(ctx, "webhook_endpoints").Where("id = ?", id).Take(&e).Error
	return &e, dbErr(err, "webhook endpoint")
}

// ListWebhookEndpoints returns every endpoint by name.
func (s *Store) ListWebhookEndpoints(ctx context.Context) ([]mdmd.WebhookEndpoint, error) {
	var out []mdmd.WebhookEndpoint
	err := s.table(ctx, "webhook_endpoints").Order("name, id").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "webhook endpoints")
}

// UpdateWebhookEndpoint changes the fields u sets. A rejected change
// changes nothing. Any change of Enabled by this call clears the reason
// mdmd gave for disabling the endpoint; disabling holds the endpoint's
// pending deliveries and enabling releases them (holdWebhookDeliveries).
func (s *Store) UpdateWebhookEndpoint(ctx context.Context, id string, u mdmd.WebhookEndpointUpdate) (*mdmd.WebhookEndpoint, error) {
	var out *mdmd.WebhookEndpoint
	err := s.Tx(ctx, func(tx *Store) error {
		// Locked, so that concurrent enables and disables leave the
		// deliveries held exactly when the endpoint ends up disabled.
		if tx.dialect == migrations.Postgres {
			if err := tx.db.WithContext(ctx).Exec("SELECT 1 FROM webhook_endpoints WHERE id = ? FOR UPDATE", id).Error; err != nil {
				return dbErr(err, "webhook endpoint")
			}
		}
		cur, err := tx.GetWebhookEndpoint(ctx, id)
		if err != nil {
			return err
		}
		next := *cur
		if u.Name != nil {
			next.Name = *u.Name
		}
		if u.URL != nil {
			next.URL = *u.URL
		}
		if u.EventTypes != nil {
			next.EventTypes = normWebhookEventTypes(*u.EventTypes)
		}
		if u.Enabled != nil {
			next.Enabled = *u.Enabled
		}
		if err := next.Validate(); err != nil {
			return err
		}
		types, _ := json.Marshal(next.EventTypes)
		set := map[string]any{"name": next.Name, "url": next.URL, "event_types": string(types),
			"enabled": next.Enabled, "updated_at": tx.Now()}
		if u.Enabled != nil {
			set["disabled_reason"] = ""
		}
		if err := tx.table(ctx, "webhook_endpoints").Where("id = ?", id).Updates(set).Error; err != nil {
			return dbErr(err, "webhook endpoint")
		}
		if next.Enabled != cur.Enabled {
			if err := tx.holdWebhookDeliveries(ctx, id, !next.Enabled); err != nil {
				return err
			}
		}
		out, err = tx.GetWebhookEndpoint(ctx, id)
		return err
	})
	return out, err
}

// holdWebhookDeliveries holds (or releases) an endpoint's pending
// deliveries. A held delivery is out of the partial index that claims
// walk (webhook_deliveries_due), so the backlog of a disabled endpoint
// costs claims nothing however large it grows; released, each is due at
// its own next_attempt_at again. Callers hold the endpoint's row lock.
func (s *Store) holdWebhookDeliveries(ctx context.Context, endpointID string, held bool) error {
	err := s.table(ctx, "webhook_deliveries").Where("endpoint_id = ? AND state = ? AND held = ?", endpointID, mdmd.WebhookPending, !held).
		Update("held", held).Error
	return dbErr(err, "webhook deliveries")
}

// DisableWebhookEndpoint disables an endpoint on mdmd's own initiative
// and records why. Its pending deliveries are held until it is enabled.
func (s *Store) DisableWebhookEndpoint(ctx context.Context, id, reason string) error {
	reason = clipWebhookText(reason, 500)
	return s.Tx(ctx, func(tx *Store) error {
		res := tx.table(ctx, "webhook_endpoints").Where("id = ?", id).
			Updates(map[string]any{"enabled": false, "disabled_reason": reason, "updated_at": tx.Now()})
		if res.Error != nil {
			return dbErr(res.Error, "webhook endpoint")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no webhook endpoint %s", id)
		}
		return tx.holdWebhookDeliveries(ctx, id, true)
	})
}

// webhookEndpointsEnabled reads whether each of the endpoints is enabled,
// holding their rows (FOR SHARE on PostgreSQL) until the transaction
// ends: an endpoint disabled or enabled meanwhile waits for it, and then
// holds or releases what it wrote. Unknown IDs are left out.
func (s *Store) webhookEndpointsEnabled(ctx context.Context, ids []string) (map[string]bool, error) {
	lock := ""
	if s.dialect == migrations.Postgres {
		lock = " FOR SHARE"
	}
	var rows []struct {
		ID      string
		Enabled bool
	}
	if err := s.db.WithContext(ctx).Raw("SELECT id, enabled FROM webhook_endpoints WHERE id IN ? ORDER BY id"+lock, ids).Scan(&rows).Error; err != nil {
		return nil, dbErr(err, "webhook endpoints")
	}
	out := make(map[string]bool, len(rows))
	for _, r := range rows {
		out[r.ID] = r.Enabled
	}
	return out, nil
}

// RotateWebhookSecret replaces an endpoint's sealed secret. With
// keepPreviousUntil the secret it replaces stays in use (deliveries carry
// a signature by each) until then; without, it is forgotten at once. The
// two columns swap in one statement, so concurrent rotations cannot lose
// the current secret.
func (s *Store) RotateWebhookSecret(ctx context.Context, id string, sealed []byte, keepPreviousUntil *time.Time) (*mdmd.WebhookEndpoint, error) {
	if len(sealed) == 0 {
		return nil, mdmd.FieldError("secret", "a sealed secret is required")
	}
	set := map[string]any{"secret_enc": sealed, "updated_at": s.Now(),
		"prev_secret_enc": gorm.Expr("NULL"), "prev_secret_until": gorm.Expr("NULL")}
	if keepPreviousUntil != nil {
		// Right-hand sides read the row as it was before the update.
		set["prev_secret_enc"], set["prev_secret_until"] = gorm.Expr("secret_enc"), utc(*keepPreviousUntil)
	}
	res := s.table(ctx, "webhook_endpoints").Where("id = ?", id).Updates(set)
	if res.Error != nil {
		return nil, dbErr(res.Error, "webhook endpoint")
	}
	if res.RowsAffected == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "no webhook endpoint %s", id)
	}
	return s.GetWebhookEndpoint(ctx, id)
}

// DeleteWebhookEndpoint removes an endpoint with its deliveries and their
// attempt log.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	res := s.table(ctx, "webhook_endpoints").Where("id = ?", id).Delete(&mdmd.WebhookEndpoint{})
	if res.Error != nil {
		return dbErr(res.Error, "webhook endpoint")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ENotFound, "no webhook endpoint %s", id)
	}
	return nil
}

// newWebhookMessageID returns a webhook-id: unique, and never reused even if the
// event log's sequence starts over (a restored database), so receivers
// that drop duplicates by ID never drop a new event.
func newWebhookMessageID() string { return "msg_" + strings.ReplaceAll(newID(), "-", "") }

// CreateWebhookDeliveries queues deliveries, due at once unless
// NextAttemptAt is set. A second delivery of the same event to the same
// endpoint is not created. It returns how many it created. Fan-out calls
// it in the ConsumeEvents transaction, so each event is fanned out once.
// A delivery for an endpoint that is disabled (by the time this runs:
// the endpoints are read under a lock) is created held.
func (s *Store) CreateWebhookDeliveries(ctx context.Context, ds []mdmd.WebhookDelivery) (int64, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	now := s.Now()
	rows := make([]mdmd.WebhookDelivery, len(ds))
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.EndpointID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for i, d := range ds {
		switch {
		case d.EndpointID == "":
			return 0, mdmd.FieldError("endpoint_id", "required")
		case d.EventType != mdmd.EventWebhookTest && !slices.Contains(mdmd.EventTypes, d.EventType):
			return 0, mdmd.FieldError("event_type", "unknown event type %q", d.EventType)
		case d.EventSeq < 0 || (d.EventSeq == 0) != (d.EventType == mdmd.EventWebhookTest):
			return 0, mdmd.FieldError("event_seq", "an event needs its sequence number, a test ping has none")
		case len(d.Payload) == 0 || !json.Valid(d.Payload):
			return 0, mdmd.FieldError("payload", "must be JSON")
		}
		if d.ID == "" {
			d.ID = newID()
		}
		if d.MessageID == "" {
			d.MessageID = newWebhookMessageID()
		}
		if d.NextAttemptAt.IsZero() {
			d.NextAttemptAt = now
		}
		d.NextAttemptAt = utc(d.NextAttemptAt)
		d.State, d.Attempts, d.RoundAttempts, d.LastStatus, d.LastError = mdmd.WebhookPending, 0, 0, 0, ""
		d.LeaseOwner, d.LeaseUntil, d.DeliveredAt, d.CreatedAt, d.UpdatedAt = "", nil, nil, now, now
		rows[i] = d
	}
	var created int64
	err := s.Tx(ctx, func(tx *Store) error {
		enabled, err := tx.webhookEndpointsEnabled(ctx, ids)
		if err != nil {
			return err
		}
		for i := range rows {
			on, known := enabled[rows[i].EndpointID]
			rows[i].Held = known && !on // an unknown endpoint fails on its foreign key
		}
		res := tx.table(ctx, "webhook_deliveries").Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(rows, 200)
		created = res.RowsAffected
		return dbErr(res.Error, "webhook delivery")
	})
	if err != nil {
		return 0, err
	}
	copy(ds, rows)
	return created, nil
}

// GetWebhookDelivery returns the delivery with the given ID.
func (s *Store) GetWebhookDelivery(ctx context.Context, id string) (*mdmd.WebhookDelivery, error) {
	var d mdmd.WebhookDelivery
	err := s.table(ctx, "webhook_deliveries").Where("id = ?", id).Take(&d).Error
	return &d, dbErr(err, "webhook delivery")
}

// ListWebhookDeliveries returns deliveries newest first, and the cursor
// of the next page ("" on the last).
func (s *Store) ListWebhookDeliveries(ctx context.Context, f mdmd.WebhookDeliveryFilter) ([]mdmd.WebhookDelivery, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	q := s.table(ctx, "webhook_deliveries")
	if f.EndpointID != "" {
		q = q.Where("endpoint_id = ?", f.EndpointID)
	}
	if f.State != "" {
		q = q.Where("state = ?", f.State)
	}
	if f.After != "" {
		q = q.Where("id < ?", f.After)
	}
	limit := limitOf(f.Limit)
	var out []mdmd.WebhookDelivery
	if err := q.Order("id DESC").Limit(limit + 1).Find(&out).Error; err != nil {
		return nil, "", dbErr(err, "webhook deliveries")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// ListWebhookAttempts returns the attempt log of the given deliveries,
// by delivery and attempt.
func (s *Store) ListWebhookAttempts(ctx context.Context, deliveryIDs []string) ([]mdmd.WebhookAttempt, error) {
	if len(deliveryIDs) == 0 {
		return nil, nil
	}
	var out []mdmd.WebhookAttempt
	err := s.table(ctx, "webhook_attempts").Where("delivery_id IN ?", deliveryIDs).Order("delivery_id, attempt").Find(&out).Error
	return out, dbErr(err, "webhook attempts")
}

// ClaimWebhookDeliveries leases up to n due deliveries to owner until now
// plus lease, oldest due first. A delivery is due when it is pending, its
// next attempt time has come, its endpoint is enabled and it is not under
// an unexpired lease (a worker that died loses its claim when the lease
// ends). The deliveries of a disabled endpoint are held, out of the
// partial index the claim walks, so they cost it nothing; the predicate
// is written with literals so that both databases can prove the index
// applies (a bound parameter in its place hides it from the planner). On PostgreSQL concurrent claimers skip each other's rows (FOR
// UPDATE SKIP LOCKED); SQLite runs the claim as one write transaction.
// Either way a delivery is held by one owner at a time; owner must be
// unique per claim, as RecordWebhookAttempt is fenced by it.
func (s *Store) ClaimWebhookDeliveries(ctx context.Context, owner string, n int, lease time.Duration) ([]mdmd.WebhookDelivery, error) {
	if owner == "" || n <= 0 || lease <= 0 {
		return nil, mdmd.FieldError("claim", "an owner, a positive count and a positive lease are required")
	}
	now := s.Now()
	lock := ""
	if s.dialect == migrations.Postgres {
		lock = " FOR UPDATE OF d SKIP LOCKED"
	}
	sql := `UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?, updated_at = ?
WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.state = 'pending' AND NOT d.held AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?) AND e.enabled
ORDER BY d.next_attempt_at, d.id LIMIT ?` + lock + `)
RETURNING *`
	var out []mdmd.WebhookDelivery
	err := s.db.WithContext(ctx).Raw(sql, owner, now.Add(lease), now, now, now, n).Scan(&out).Error
	if err != nil {
		return nil, dbErr(err, "webhook deliveries")
	}
	slices.SortFunc(out, func(a, b mdmd.WebhookDelivery) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// RecordWebhookAttempt logs an attempt at a delivery that owner holds
// and releases it in the given state: delivered, failed (given up), or
// pending again until next. The attempt is numbered after the delivery's
// previous ones. It fails with ELeaseLost when owner no longer holds the
// delivery; nothing is recorded then.
func (s *Store) RecordWebhookAttempt(ctx context.Context, id, owner string, a mdmd.WebhookAttempt, state string, next time.Time) (*mdmd.WebhookDelivery, error) {
	if !slices.Contains(mdmd.WebhookDeliveryStates, state) {
		return nil, mdmd.FieldError("state", "unknown delivery state %q", state)
	}
	if state == mdmd.WebhookPending && next.IsZero() {
		return nil, mdmd.FieldError("next_attempt_at", "a delivery left pending needs its next attempt time")
	}
	if owner == "" {
		return nil, mdmd.FieldError("owner", "required")
	}
	a.Error = clipWebhookText(a.Error, 1000)
	var out *mdmd.WebhookDelivery
	err := s.Tx(ctx, func(tx *Store) error {
		lost := mdmd.Errorf(mdmd.ELeaseLost, "webhook delivery %s is no longer leased to this worker", id)
		var d mdmd.WebhookDelivery
		err := tx.table(ctx, "webhook_deliveries").Where("id = ? AND lease_owner = ? AND state = ?", id, owner, mdmd.WebhookPending).Take(&d).Error
		if err != nil {
			if mdmd.IsCode(dbErr(err, "webhook delivery"), mdmd.ENotFound) {
				return lost
			}
			return dbErr(err, "webhook delivery")
		}
		now := tx.Now()
		a.DeliveryID, a.Attempt = id, d.Attempts+1
		if a.At.IsZero() {
			a.At = now
		}
		a.At = utc(a.At)
		if err := tx.table(ctx, "webhook_attempts").Create(&a).Error; err != nil {
			return dbErr(err, "webhook attempt")
		}
		set := map[string]any{"attempts": d.Attempts + 1, "round_attempts": d.RoundAttempts + 1, "state": state,
			"last_status": a.Status, "last_error": a.Error, "lease_owner": "", "lease_until": nil, "updated_at": now}
		switch state {
		case mdmd.WebhookDelivered:
			set["delivered_at"] = now
		case mdmd.WebhookPending:
			set["next_attempt_at"] = utc(next)
		}
		// Fenced again: a reclaim between the read and this write wins.
		res := tx.table(ctx, "webhook_deliveries").Where("id = ? AND lease_owner = ?", id, owner).Updates(set)
		if res.Error != nil {
			return dbErr(res.Error, "webhook delivery")
		}
		if res.RowsAffected == 0 {
			return lost
		}
		out, err = tx.GetWebhookDelivery(ctx, id)
		return err
	})
	return out, err
}

// ReleaseWebhookDelivery gives up owner's lease on a delivery without
// recording an attempt, due again at next (for a worker that could not
// try it, for example one shutting down).
func (s *Store) ReleaseWebhookDelivery(ctx context.Context, id, owner string, next time.Time) error {
	res := s.table(ctx, "webhook_deliveries").Where("id = ? AND lease_owner = ? AND state = ?", id, owner, mdmd.WebhookPending).
		Updates(map[string]any{"lease_owner": "", "lease_until": nil, "next_attempt_at": utc(next), "updated_at": s.Now()})
	if res.Error != nil {
		return dbErr(res.Error, "webhook delivery")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ELeaseLost, "webhook delivery %s is no longer leased to this worker", id)
	}
	return nil
}

// RedeliverWebhook queues a delivery of the endpoint again, due now, with
// a fresh round of attempts and the same message ID (held, if the
// endpoint is disabled).
func (s *Store) RedeliverWebhook(ctx context.Context, endpointID, id string) (*mdmd.WebhookDelivery, error) {
	var out *mdmd.WebhookDelivery
	err := s.Tx(ctx, func(tx *Store) error {
		enabled, err := tx.webhookEndpointsEnabled(ctx, []string{endpointID})
		if err != nil {
			return err
		}
		on, known := enabled[endpointID]
		if !known {
			return mdmd.Errorf(mdmd.ENotFound, "no delivery %s for webhook endpoint %s", id, endpointID)
		}
		now := tx.Now()
		res := tx.table(ctx, "webhook_deliveries").Where("id = ? AND endpoint_id = ?", id, endpointID).
			Updates(map[string]any{"state": mdmd.WebhookPending, "held": !on, "round_attempts": 0, "next_attempt_at": now,
				"delivered_at": nil, "updated_at": now})
		if res.Error != nil {
			return dbErr(res.Error, "webhook delivery")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "no delivery %s for webhook endpoint %s", id, endpointID)
		}
		out, err = tx.GetWebhookDelivery(ctx, id)
		return err
	})
	return out, err
}

// PruneWebhookDeliveries deletes finished deliveries (delivered or
// failed) last changed before before, with their attempt log, and the
// attempts of any delivery made before before. Pending deliveries are
// kept however old. It returns how many deliveries it deleted.
func (s *Store) PruneWebhookDeliveries(ctx context.Context, before time.Time) (int64, error) {
	res := s.table(ctx, "webhook_deliveries").Where("state <> ? AND updated_at < ?", mdmd.WebhookPending, utc(before)).
		Delete(&mdmd.WebhookDelivery{})
	if res.Error != nil {
		return 0, dbErr(res.Error, "webhook deliveries")
	}
	err := s.table(ctx, "webhook_attempts").Where("at < ?", utc(before)).Delete(&mdmd.WebhookAttempt{}).Error
	return res.RowsAffected, dbErr(err, "webhook attempts")
}

// clipWebhookText cuts s to at most n bytes without splitting a UTF-8 sequence.
func clipWebhookText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
