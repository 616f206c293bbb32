package storage

import (
	"context"
	"slices"
	"time"

	"github.com/mdmd/mdmd"
)

// CreateApproval stores a new pending approval request, assigning its ID
// and, when unset, its request time and expiry (mdmd.DefaultApprovalTTL).
func (s *Store) CreateApproval(ctx context.Context, a *mdmd.Approval) error {
	a.ID = newID()
	a.State = mdmd.ApprovalPending
	if a.RequestedAt.IsZero() {
		a.RequestedAt = s.Now()
	}
	a.RequestedAt = utc(a.RequestedAt)
	if a.ExpiresAt.IsZero() {
		a.ExpiresAt = a.RequestedAt.Add(mdmd.DefaultApprovalTTL)
	}
	a.ExpiresAt = utc(a.ExpiresAt)
	a.DecidedBy, a.DecidedByName, a.DecidedAt, a.DecisionReason, a.Result = "", "", nil, "", nil
	if err := a.Validate(); err != nil {
		return err
	}
	return dbErr(s.table(ctx, "approvals").Create(a).Error, "approval")
}

// GetApproval returns an approval.
func (s *Store) GetApproval(ctx context.Context, id string) (*mdmd.Approval, error) {
	var a mdmd.Approval
	err := s.table(ctx, "approvals").Where("id = ?", id).Take(&a).Error
	return &a, dbErr(err, "approval")
}

// ListApprovals returns the newest approvals, optionally only those in a
// state.
func (s *Store) ListApprovals(ctx context.Context, state string, limit int) ([]mdmd.Approval, error) {
	q := s.table(ctx, "approvals")
	if state != "" {
		if !slices.Contains(mdmd.ApprovalStates, state) {
			return nil, mdmd.FieldError("state", "unknown approval state %q", state)
		}
		q = q.Where("state = ?", state)
	}
	var out []mdmd.Approval
	err := q.Order("requested_at DESC, id DESC").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "approvals")
}

// ExpireApprovals marks the pending approvals whose time ran out at now as
// expired and returns how many it marked.
func (s *Store) ExpireApprovals(ctx context.Context, now time.Time) (int64, error) {
	res := s.table(ctx, "approvals").Where("state = ? AND expires_at <= ?", mdmd.ApprovalPending, utc(now)).
		Updates(map[string]any{"state": mdmd.ApprovalExpired, "decided_at": utc(now)})
	return res.RowsAffected, dbErr(res.Error, "approvals")
}

// DecideApproval moves a pending approval to approved or rejected in one
// conditional update: it must still be pending, not expired at d.At, and
// not requested by the decider. Of several concurrent decisions (on any
// replica) exactly one succeeds; the others get a conflict. Approving
// your own request is forbidden (rejecting it withdraws it), and an expired request is marked expired and
// refused with a conflict.
func (s *Store) DecideApproval(ctx context.Context, id string, d mdmd.ApprovalDecision) (*mdmd.Approval, error) {
	if d.State != mdmd.ApprovalApproved && d.State != mdmd.ApprovalRejected {
		return nil, mdmd.FieldError("state", "a decision approves or rejects, not %q", d.State)
	}
	if d.By == "" {
		return nil, mdmd.FieldError("decided_by", "required")
	}
	at := utc(d.At)
	if d.At.IsZero() {
		at = s.Now()
	}
	q := s.table(ctx, "approvals").Where("id = ? AND state = ? AND expires_at > ?", id, mdmd.ApprovalPending, at)
	if d.State == mdmd.ApprovalApproved {
		q = q.Where("requested_by <> ?", d.By)
		if d.ByPerson != "" {
			q = q.Where("requested_by_person <> ?", d.ByPerson)
		}
	}
	res := q.Updates(map[string]any{"state": d.State, "decided_by": d.By, "decided_by_name": d.ByName,
		"decision_reason": d.Reason, "decided_at": at})
	if res.Error != nil {
		return nil, dbErr(res.Error, "approval")
	}
	cur, err := s.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 1 {
		return cur, nil
	}
	switch {
	case cur.State != mdmd.ApprovalPending:
		return cur, mdmd.Errorf(mdmd.EConflict, "the request is already %s", cur.State)
	case cur.RequestedBy == d.By && d.State == mdmd.ApprovalApproved:
		return cur, mdmd.Errorf(mdmd.EForbidden, "a request must be decided by someone other than its requester")
	case d.ByPerson != "" && cur.RequestedByPerson == d.ByPerson && d.State == mdmd.ApprovalApproved:
		return cur, mdmd.Errorf(mdmd.EForbidden, "a request must be approved by another person, not by its requester through another credential")
	case !cur.ExpiresAt.After(at):
		_ = s.table(ctx, "approvals").Where("id = ? AND state = ?", id, mdmd.ApprovalPending).
			Updates(map[string]any{"state": mdmd.ApprovalExpired, "decided_at": at}).Error
		cur.State = mdmd.ApprovalExpired
		return cur, mdmd.Errorf(mdmd.EConflict, "the request expired at %s", cur.ExpiresAt.Format(time.RFC3339))
	}
	return cur, mdmd.Errorf(mdmd.EConflict, "the request changed while it was being decided")
}

// FinishApproval records what carrying out an approved action gave: the
// approval stays approved, or becomes failed when state says so.
func (s *Store) FinishApproval(ctx context.Context, id, state string, result mdmd.RawJSON) (*mdmd.Approval, error) {
	if state != mdmd.ApprovalApproved && state != mdmd.ApprovalFailed {
		return nil, mdmd.FieldError("state", "an approved action ends approved or failed, not %q", state)
	}
	res := s.table(ctx, "approvals").Where("id = ? AND state = ?", id, mdmd.ApprovalApproved).
		Updates(map[string]any{"state": state, "result": result})
	if res.Error != nil {
		return nil, dbErr(res.Error, "approval")
	}
	cur, err := s.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 0 {
		return cur, mdmd.Errorf(mdmd.EConflict, "the request is %s, not approved", cur.State)
	}
	return cur, nil
}
