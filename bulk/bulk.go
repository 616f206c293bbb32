// Package bulk runs one action (a posture query, a lock, a selective or a
// full wipe) on every device a device-list filter selects. The devices are
// fixed when the action is created, so a second admin approves a list, not
// a filter that could match other devices later; every bulk wipe waits for
// that approval. Devices are sent in batches that any replica may claim
// under a lease, and progress is counted from the stored targets and their
// commands, so any replica can show it.
package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// Store is what the service needs from storage.
type Store interface {
	CreateBulkAction(ctx context.Context, b *mdmd.BulkAction, expect int) error
	GetBulkAction(ctx context.Context, id string) (*mdmd.BulkAction, error)
	ListBulkActions(ctx context.Context, limit int) ([]mdmd.BulkAction, error)
	SetBulkApproval(ctx context.Context, id, approvalID string) error
	MoveBulkAction(ctx context.Context, id, from, to string) (*mdmd.BulkAction, error)
	ClaimBulkTargets(ctx context.Context, bulkID string, n int, lease time.Duration) ([]string, error)
	FinishBulkTargets(ctx context.Context, bulkID string, results []mdmd.BulkResult) error
	BulkProgress(ctx context.Context, bulkID string) (*mdmd.BulkProgress, error)
	ListBulkTargets(ctx context.Context, bulkID, state, after string, limit int) ([]mdmd.BulkTarget, string, error)
	RunningBulkActions(ctx context.Context) ([]string, error)
	PruneBulkActions(ctx context.Context, before time.Time) (int64, error)
	AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
}

// Sender sends a bulk action to a batch of its devices (the command
// service).
type Sender interface {
	SendBulk(ctx context.Context, b *mdmd.BulkAction, by string, deviceIDs []string) ([]mdmd.BulkResult, error)
}

// Approvals records the request a bulk wipe waits for (approvals.Service).
type Approvals interface {
	Request(ctx context.Context, by *mdmd.Principal, kind, targetType, targetID, reason string, params any) (*mdmd.Approval, error)
	Get(ctx context.Context, id string) (*mdmd.Approval, error)
}

// JobQueue queues the job that sends a bulk action.
type JobQueue interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// RunJob is the job kind that sends running bulk actions; it is also run
// periodically, to finish what a replica left when it died. PruneJob
// deletes finished bulk actions after Retention.
const (
	RunJob    = "bulk.run"
	PruneJob  = "bulk.prune"
	Retention = 90 * 24 * time.Hour
)

// Service creates bulk actions, starts approved ones and sends them.
type Service struct {
	st        Store
	send      Sender
	approvals Approvals
	jobs      JobQueue
	log       *slog.Logger
	// Batch is how many devices one claim takes (default 500); Lease is
	// how long a claim lasts (default 2 minutes).
	Batch int
	Lease time.Duration
}

// New returns the service.
func New(st Store, send Sender, approvals Approvals, jobs JobQueue, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, send: send, approvals: approvals, jobs: jobs, log: log, Batch: 500, Lease: 2 * time.Minute}
}

// Request is a new bulk action.
type Request struct {
	Action string
	Filter mdmd.BulkFilter
	Params mdmd.BulkParams
	Reason string
	// Confirm, for a wipe, is the number of devices the requester typed
	// back: it must be how many the filter selects.
	Confirm string
}

// Create starts a bulk action, or for a wipe records it and asks for a
// second admin's approval. The caller's role must allow the action (the
// routes check the permission the action's kind needs; this checks it
// again, as the kind comes from the request). Nothing is stored when the
// request is refused.
func (s *Service) Create(ctx context.Context, by *mdmd.Principal, req Request) (*mdmd.BulkAction, error) {
	if by == nil || by.ID == "" {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "a bulk action needs an authenticated caller")
	}
	perm := mdmd.BulkActionPermission(req.Action)
	if perm == "" {
		return nil, mdmd.FieldError("action", "must be one of %v, got %q", mdmd.BulkActionKinds, req.Action)
	}
	if !by.Role.Can(perm) {
		return nil, mdmd.Errorf(mdmd.EForbidden, "your role (%s) lacks the permission %s that a bulk %s needs", by.Role, perm, req.Action)
	}
	b := &mdmd.BulkAction{Action: req.Action, Filter: req.Filter, Params: req.Params, Reason: req.Reason,
		CreatedBy: by.ID, CreatedByName: by.Name, State: mdmd.BulkRunning}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	expect := -1
	if mdmd.BulkNeedsApproval(b.Action) {
		b.State = mdmd.BulkAwaitingApproval
		if s.approvals == nil {
			return nil, mdmd.Errorf(mdmd.EConflict, "a bulk wipe needs a second admin's approval, and approvals are not configured")
		}
		n, err := strconv.Atoi(req.Confirm)
		if err != nil || n < 1 {
			return nil, mdmd.FieldError("confirm", "type the number of devices the filter selects to confirm the wipe")
		}
		expect = n
	}
	if err := s.st.CreateBulkAction(ctx, b, expect); err != nil {
		return nil, err
	}
	if b.State == mdmd.BulkAwaitingApproval {
		// The approver sees what the wipe will do, not just how many.
		params := map[string]any{"action": b.Action, "devices": b.Total, "filter": b.Filter,
			"push": b.Params.Push == nil || *b.Params.Push}
		if b.Action == mdmd.BulkWipeFull {
			params["preserve_frp"] = b.Params.PreserveFRP == nil || *b.Params.PreserveFRP
		}
		a, err := s.approvals.Request(ctx, by, mdmd.ApprovalBulkWipe, "bulk_action", b.ID, b.Reason, params)
		if err != nil {
			s.cancel(ctx, b.ID)
			return nil, err
		}
		if err := s.st.SetBulkApproval(ctx, b.ID, a.ID); err != nil {
			// Cancelled, an approval of the orphaned request fails.
			s.cancel(ctx, b.ID)
			return nil, err
		}
		b.ApprovalID = a.ID
	}
	s.audit(ctx, by, "bulk.create", b, mdmd.OutcomeSuccess, b.Reason,
		map[string]any{"action": b.Action, "devices": b.Total, "filter": b.Filter, "state": b.State})
	if b.State == mdmd.BulkRunning {
		if err := s.wake(ctx); err != nil {
			s.log.Warn("queuing a bulk action failed; the periodic run will send it", "bulk", b.ID, "err", err)
		}
	}
	return b, nil
}

func (s *Service) cancel(ctx context.Context, id string) {
	if _, err := s.st.MoveBulkAction(context.WithoutCancel(ctx), id, mdmd.BulkAwaitingApproval, mdmd.BulkCancelled); err != nil {
		s.log.Error("cancelling a bulk action failed", "bulk", id, "err", err)
	}
}

// StartBulkAction starts a bulk wipe a second admin approved: the
// approval service's executor. Its devices are those fixed at the request.
func (s *Service) StartBulkAction(ctx context.Context, id, by string) (any, error) {
	b, err := s.st.MoveBulkAction(ctx, id, mdmd.BulkAwaitingApproval, mdmd.BulkRunning)
	if err != nil {
		return nil, err
	}
	if err := s.wake(ctx); err != nil {
		s.log.Warn("queuing a bulk action failed; the periodic run will send it", "bulk", b.ID, "err", err)
	}
	return map[string]any{"bulk_action_id": b.ID, "action": b.Action, "devices": b.Total, "started_by": by}, nil
}

func (s *Service) wake(ctx context.Context) error {
	if s.jobs == nil {
		return nil
	}
	_, err := s.jobs.Enqueue(ctx, &mdmd.Job{Kind: RunJob, MaxAttempts: 3})
	return err
}

// Status is a bulk action with its progress.
type Status struct {
	*mdmd.BulkAction
	Progress *mdmd.BulkProgress `json:"progress"`
	// Approval is the request a wipe waits for (or waited for).
	Approval *mdmd.Approval `json:"approval,omitempty"`
}

// Get returns a bulk action with its progress. A wipe whose approval was
// rejected or expired is cancelled here, so nothing can start it later.
func (s *Service) Get(ctx context.Context, id string) (*Status, error) {
	b, err := s.st.GetBulkAction(ctx, id)
	if err != nil {
		return nil, err
	}
	st := &Status{BulkAction: b}
	if st.BulkAction, st.Approval, err = s.settle(ctx, b); err != nil {
		return nil, err
	}
	if st.Progress, err = s.st.BulkProgress(ctx, id); err != nil {
		return nil, err
	}
	return st, nil
}

// settle reads the approval a bulk wipe waits for (nil for other actions)
// and cancels the wipe if that approval was rejected, expired or failed.
func (s *Service) settle(ctx context.Context, b *mdmd.BulkAction) (*mdmd.BulkAction, *mdmd.Approval, error) {
	if b.ApprovalID == "" || s.approvals == nil {
		return b, nil, nil
	}
	a, err := s.approvals.Get(ctx, b.ApprovalID)
	if err != nil {
		return nil, nil, err
	}
	if b.State != mdmd.BulkAwaitingApproval || !slices.Contains([]string{mdmd.ApprovalRejected, mdmd.ApprovalExpired, mdmd.ApprovalFailed}, a.State) {
		return b, a, nil
	}
	moved, err := s.st.MoveBulkAction(ctx, b.ID, mdmd.BulkAwaitingApproval, mdmd.BulkCancelled)
	if moved == nil {
		return nil, nil, err
	}
	return moved, a, nil // moved here, or by someone else meanwhile
}

// List returns the newest bulk actions; those whose approval was rejected
// or expired are shown cancelled.
func (s *Service) List(ctx context.Context, limit int) ([]mdmd.BulkAction, error) {
	bs, err := s.st.ListBulkActions(ctx, limit)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i].State == mdmd.BulkAwaitingApproval {
			b, _, err := s.settle(ctx, &bs[i])
			if err != nil {
				return nil, err
			}
			bs[i] = *b
		}
	}
	return bs, nil
}

// Cancel stops a bulk action that is running or awaiting approval: no
// device not yet sent gets the action (a batch being sent at that moment
// still arrives). It needs the permission the action's kind needs.
func (s *Service) Cancel(ctx context.Context, by *mdmd.Principal, id, reason string) (*mdmd.BulkAction, error) {
	if strings.TrimSpace(reason) == "" || len(reason) > 500 {
		return nil, mdmd.FieldError("reason", "required, at most 500 characters")
	}
	b, err := s.st.GetBulkAction(ctx, id)
	if err != nil {
		return nil, err
	}
	if perm := mdmd.BulkActionPermission(b.Action); by == nil || !by.Role.Can(perm) {
		return nil, mdmd.Errorf(mdmd.EForbidden, "cancelling a bulk %s needs the permission %s", b.Action, perm)
	}
	if b.State != mdmd.BulkRunning && b.State != mdmd.BulkAwaitingApproval {
		return nil, mdmd.Errorf(mdmd.EConflict, "bulk action %s is %s: only a running or waiting one can be cancelled", id, b.State)
	}
	done, err := s.st.MoveBulkAction(ctx, id, b.State, mdmd.BulkCancelled)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, by, "bulk.cancel", done, mdmd.OutcomeSuccess, reason, map[string]any{"action": b.Action, "was": b.State})
	return done, nil
}

// For returns the status as a role may read it: without the approval's
// people and reasons for a role that cannot see approvals.
func (st *Status) For(role mdmd.Role) *Status {
	if st.Approval == nil || role.Can(mdmd.PermCommandsWipe) {
		return st
	}
	out := *st
	out.Approval = &mdmd.Approval{ID: st.Approval.ID, Kind: st.Approval.Kind, State: st.Approval.State}
	return &out
}

// Prune deletes the bulk actions that finished more than Retention ago.
func (s *Service) Prune(ctx context.Context, _ *mdmd.Job) error {
	_, err := s.st.PruneBulkActions(ctx, time.Now().Add(-Retention))
	return err
}

// Targets returns a page of a bulk action's devices.
func (s *Service) Targets(ctx context.Context, id, state, after string, limit int) ([]mdmd.BulkTarget, string, error) {
	if _, err := s.st.GetBulkAction(ctx, id); err != nil {
		return nil, "", err
	}
	return s.st.ListBulkTargets(ctx, id, state, after, limit)
}

// Run sends every running bulk action: one batch of each in turn (so a
// small urgent action is not stuck behind a fleet-wide one), until none
// has devices left to claim or ctx is almost done, and marks an action
// done once all its devices were sent. Replicas may run it at once:
// claims never overlap. A batch whose replica died is sent again once its
// claim runs out, so a device may, rarely, get an action twice (harmless
// for these actions); it never gets it zero times. An action whose batch
// fails is retried on the next run; the others go on.
func (s *Service) Run(ctx context.Context) (int, error) {
	ids, err := s.st.RunningBulkActions(ctx)
	if err != nil {
		return 0, err
	}
	actions := make([]*mdmd.BulkAction, 0, len(ids))
	for _, id := range ids {
		b, err := s.st.GetBulkAction(ctx, id)
		if err != nil {
			return 0, err
		}
		actions = append(actions, b)
	}
	sent := 0
	var errs []error
	for len(actions) > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < s.Lease {
			// Leave the rest to the next run rather than hold claims
			// past this job's own lease.
			break
		}
		next := actions[:0]
		for _, b := range actions {
			n, more, err := s.batch(ctx, b)
			sent += n
			switch {
			case err != nil:
				s.log.Warn("sending a bulk action failed; the next run retries it", "bulk", b.ID, "err", err)
				errs = append(errs, err)
			case more:
				next = append(next, b)
			default:
				s.finish(ctx, b.ID)
			}
		}
		actions = next
	}
	return sent, errors.Join(errs...)
}

// batch claims and sends one batch of an action. more reports whether it
// claimed anything (there may be more).
func (s *Service) batch(ctx context.Context, b *mdmd.BulkAction) (sent int, more bool, err error) {
	ids, err := s.st.ClaimBulkTargets(ctx, b.ID, s.Batch, s.Lease)
	if err != nil || len(ids) == 0 {
		return 0, false, err
	}
	results, sendErr := s.send.SendBulk(ctx, b, b.CreatedByName+" (bulk action "+b.ID+")", ids)
	// What was sent before a failure is recorded; the rest stays claimed
	// and is sent again when its claim runs out, as is a device whose
	// send hit a transient failure.
	final := results[:0]
	for _, r := range results {
		if r.State != mdmd.TargetPending {
			final = append(final, r)
		}
	}
	if err := s.st.FinishBulkTargets(ctx, b.ID, final); err != nil {
		return 0, false, err
	}
	if sendErr != nil {
		return len(final), false, fmt.Errorf("bulk action %s: %w", b.ID, sendErr)
	}
	return len(final), true, nil
}

// finish marks an action done once no device is left to send (another
// replica may still hold claims: then it finishes it).
func (s *Service) finish(ctx context.Context, id string) {
	done, err := s.st.MoveBulkAction(ctx, id, mdmd.BulkRunning, mdmd.BulkDone)
	if err != nil {
		if !mdmd.IsCode(err, mdmd.EConflict) {
			s.log.Warn("finishing a bulk action failed", "bulk", id, "err", err)
		}
		return
	}
	p, err := s.st.BulkProgress(ctx, id)
	if err != nil {
		s.log.Warn("reading a finished bulk action's progress failed", "bulk", id, "err", err)
		p = &mdmd.BulkProgress{}
	}
	s.audit(ctx, &mdmd.Principal{Type: mdmd.ActorSystem, ID: "bulk", Name: "mdmd"}, "bulk.done", done, mdmd.OutcomeSuccess, "",
		map[string]any{"action": done.Action, "devices": p.Total, "sent": p.Sent, "failed": p.Failed, "skipped": p.Skipped})
}

func (s *Service) audit(ctx context.Context, by *mdmd.Principal, action string, b *mdmd.BulkAction, outcome, reason string, details any) {
	e := &mdmd.AuditEvent{ActorType: by.Type, Actor: by.Name + " (" + by.ID + ")", Action: action,
		TargetType: "bulk_action", TargetID: b.ID, Outcome: outcome, Reason: reason, RequestID: web.RequestID(ctx)}
	if e.ActorType == "" {
		e.ActorType = mdmd.ActorAdmin
	}
	if details != nil {
		e.Details, _ = json.Marshal(details)
	}
	if err := s.st.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit append failed", "err", err, "action", action)
	}
}

// RunJob is the job handler of RunJob.
func (s *Service) RunJob(ctx context.Context, _ *mdmd.Job) error {
	_, err := s.Run(ctx)
	return err
}
