// Package approvals is two-person approval of destructive actions: a full
// wipe of a device, or a wipe of a group's devices, is only requested by
// one admin and carried out once a second admin approves it, and so is
// any bulk wipe (package bulk).
package approvals

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// Store is what the service needs from storage.
type Store interface {
	CreateApproval(ctx context.Context, a *mdmd.Approval) error
	GetApproval(ctx context.Context, id string) (*mdmd.Approval, error)
	ListApprovals(ctx context.Context, state string, limit int) ([]mdmd.Approval, error)
	ExpireApprovals(ctx context.Context, now time.Time) (int64, error)
	DecideApproval(ctx context.Context, id string, d mdmd.ApprovalDecision) (*mdmd.Approval, error)
	FinishApproval(ctx context.Context, id, state string, result mdmd.RawJSON) (*mdmd.Approval, error)
	AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
}

// Executor carries out approved actions (the command service implements
// it). by names the requester and the approver, for the commands' records.
// The result is stored on the approval as JSON.
type Executor interface {
	// WipeDeviceFull fully wipes (factory-resets) one device.
	WipeDeviceFull(ctx context.Context, deviceID, by, reason string, p WipeParams) (any, error)
	// WipeGroup wipes every enrolled device of a group, selectively or fully.
	WipeGroup(ctx context.Context, groupID, by, reason string, p WipeParams) (any, error)
	// StartBulkAction starts a bulk wipe, whose devices were fixed when it
	// was requested.
	StartBulkAction(ctx context.Context, id, by string) (any, error)
}

// WipeParams are the parameters of a wipe request, kept on the approval.
type WipeParams struct {
	// Mode is "full" or "selective" (a group wipe may be either; a device
	// wipe that needs approval is always full).
	Mode string `json:"mode"`
	// PIN is the Find My PIN of a fully wiped Apple device.
	PIN string `json:"pin,omitempty"`
	// Push wakes the devices at once (default true).
	Push *bool `json:"push,omitempty"`
	// PreserveFRP keeps factory reset protection on fully wiped Android
	// devices (default true).
	PreserveFRP *bool `json:"preserve_frp,omitempty"`
}

// Service requests, decides and carries out approvals.
type Service struct {
	st   Store
	exec Executor
	log  *slog.Logger
	now  func() time.Time
	// TTL is how long a request waits for its decision.
	TTL time.Duration
}

// New returns the approval service; now may be nil (time.Now).
func New(st Store, exec Executor, log *slog.Logger, now func() time.Time) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, exec: exec, log: log, now: now, TTL: mdmd.DefaultApprovalTTL}
}

// Request records a pending request for a destructive action; nothing is
// carried out until a second admin approves it. params is stored as JSON
// (WipeParams for the wipe kinds). The request is audited.
func (s *Service) Request(ctx context.Context, by *mdmd.Principal, kind, targetType, targetID, reason string, params any) (*mdmd.Approval, error) {
	if by == nil || by.ID == "" {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "an approval request needs an authenticated requester")
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, mdmd.FieldError("params", "not JSON: %v", err)
	}
	if params == nil {
		raw = nil
	}
	now := s.now().UTC()
	a := &mdmd.Approval{Kind: kind, TargetType: targetType, TargetID: targetID, Params: raw, Reason: reason,
		RequestedBy: by.ID, RequestedByName: by.Name, RequestedByPerson: by.Person, RequestedAt: now, ExpiresAt: now.Add(s.TTL)}
	if err := s.st.CreateApproval(ctx, a); err != nil {
		s.audit(ctx, by, "approval.request", a, mdmd.OutcomeFailure, reason, map[string]any{"kind": kind, "error": mdmd.ErrorMessage(err)})
		return nil, err
	}
	s.audit(ctx, by, "approval.request", a, mdmd.OutcomeSuccess, reason, map[string]any{"kind": kind, "params": a.Params, "expires_at": a.ExpiresAt})
	return a, nil
}

// Approve approves a pending request and carries the action out, exactly
// once: of concurrent approvals (on any replica) only the one that moves
// the request from pending to approved executes it. The requester cannot
// approve their own request (forbidden); an expired or already decided
// request is a conflict. When the action fails the approval ends failed,
// with the error as its result, and is still returned without an error.
func (s *Service) Approve(ctx context.Context, by *mdmd.Principal, id string) (*mdmd.Approval, error) {
	if by == nil || by.ID == "" {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "an approval needs an authenticated approver")
	}
	a, err := s.st.DecideApproval(ctx, id, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: by.ID, ByPerson: by.Person,
		ByName: by.Name, At: s.now()})
	if err != nil {
		s.denied(ctx, by, "approval.approve", id, a, err)
		return nil, err
	}
	// Decided, the action is carried out and recorded even if the
	// approver's request goes away meanwhile (a closed browser tab).
	ctx = context.WithoutCancel(ctx)
	result, execErr := s.execute(ctx, a)
	state := mdmd.ApprovalApproved
	if execErr != nil {
		state = mdmd.ApprovalFailed
		result = map[string]any{"error": mdmd.ErrorMessage(execErr)}
		s.log.Warn("approved action failed", "approval", a.ID, "kind", a.Kind, "target", a.TargetID, "err", execErr)
	}
	raw, _ := json.Marshal(result)
	done, err := s.st.FinishApproval(ctx, a.ID, state, raw)
	if err != nil {
		// The action has been carried out (or tried); only its record failed.
		s.log.Error("recording an approved action's result failed", "approval", a.ID, "err", err)
		a.State, a.Result = state, raw
		done = a
	}
	outcome := mdmd.OutcomeSuccess
	if execErr != nil {
		outcome = mdmd.OutcomeFailure
	}
	details := map[string]any{"approval_id": a.ID, "kind": a.Kind, "requested_by": a.RequestedByName, "result": done.Result}
	s.audit(ctx, by, "approval.approve", a, outcome, a.Reason, details)
	// The action itself, under its own name, as when it was immediate.
	s.audit(ctx, by, actionName(a.Kind), a, outcome, a.Reason, details)
	return done, nil
}

// Reject rejects a pending request with a reason; nothing is carried out.
// The requester may withdraw their own request this way.
func (s *Service) Reject(ctx context.Context, by *mdmd.Principal, id, reason string) (*mdmd.Approval, error) {
	if by == nil || by.ID == "" {
		return nil, mdmd.Errorf(mdmd.EUnauthenticated, "a rejection needs an authenticated caller")
	}
	if reason == "" || len(reason) > 500 {
		return nil, mdmd.FieldError("reason", "required, at most 500 characters")
	}
	a, err := s.st.DecideApproval(ctx, id, mdmd.ApprovalDecision{State: mdmd.ApprovalRejected, By: by.ID, ByName: by.Name, Reason: reason, At: s.now()})
	if err != nil {
		s.denied(ctx, by, "approval.reject", id, a, err)
		return nil, err
	}
	s.audit(ctx, by, "approval.reject", a, mdmd.OutcomeSuccess, reason,
		map[string]any{"approval_id": a.ID, "kind": a.Kind, "requested_by": a.RequestedByName, "request_reason": a.Reason})
	return a, nil
}

// List returns the newest approvals, optionally only those in a state;
// requests whose time ran out are marked expired first.
func (s *Service) List(ctx context.Context, state string, limit int) ([]mdmd.Approval, error) {
	if _, err := s.st.ExpireApprovals(ctx, s.now()); err != nil {
		return nil, err
	}
	return s.st.ListApprovals(ctx, state, limit)
}

// Get returns an approval (marked expired if its time ran out).
func (s *Service) Get(ctx context.Context, id string) (*mdmd.Approval, error) {
	a, err := s.st.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.State == mdmd.ApprovalPending && !a.ExpiresAt.After(s.now()) {
		if _, err := s.st.ExpireApprovals(ctx, s.now()); err != nil {
			return nil, err
		}
		return s.st.GetApproval(ctx, id)
	}
	return a, nil
}

func (s *Service) execute(ctx context.Context, a *mdmd.Approval) (any, error) {
	if s.exec == nil {
		return nil, mdmd.Errorf(mdmd.EUnavailable, "no executor for approved actions")
	}
	var p WipeParams
	if len(a.Params) > 0 {
		if err := json.Unmarshal(a.Params, &p); err != nil {
			return nil, fmt.Errorf("approval %s: params: %w", a.ID, err)
		}
	}
	by := fmt.Sprintf("%s, approved by %s", a.RequestedByName, a.DecidedByName)
	switch a.Kind {
	case mdmd.ApprovalDeviceWipeFull:
		p.Mode = "full"
		return s.exec.WipeDeviceFull(ctx, a.TargetID, by, a.Reason, p)
	case mdmd.ApprovalGroupWipe:
		return s.exec.WipeGroup(ctx, a.TargetID, by, a.Reason, p)
	case mdmd.ApprovalBulkWipe:
		return s.exec.StartBulkAction(ctx, a.TargetID, by)
	}
	return nil, mdmd.Errorf(mdmd.EInvalid, "unknown approval kind %q", a.Kind)
}

// actionName is the audit action of an approved kind, the same as the
// immediate action's.
func actionName(kind string) string {
	switch kind {
	case mdmd.ApprovalDeviceWipeFull:
		return "device.wipe"
	case mdmd.ApprovalGroupWipe:
		return "group.wipe"
	case mdmd.ApprovalBulkWipe:
		return "bulk.start"
	}
	return kind
}

// denied audits a refused decision: forbidden (own request) as denied,
// anything else as a failure.
func (s *Service) denied(ctx context.Context, by *mdmd.Principal, action, id string, a *mdmd.Approval, err error) {
	outcome := mdmd.OutcomeFailure
	if mdmd.IsCode(err, mdmd.EForbidden) {
		outcome = mdmd.OutcomeDenied
	}
	if a == nil || a.ID == "" {
		a = &mdmd.Approval{ID: id, TargetType: "approval", TargetID: id}
	}
	reason := a.Reason
	s.audit(ctx, by, action, a, outcome, reason, map[string]any{"approval_id": id, "kind": a.Kind, "state": a.State, "error": mdmd.ErrorMessage(err)})
}

// audit appends to the audit log; the target is the approval's target,
// so the device's or group's history shows the whole story.
func (s *Service) audit(ctx context.Context, by *mdmd.Principal, action string, a *mdmd.Approval, outcome, reason string, details any) {
	e := &mdmd.AuditEvent{ActorType: by.Type, Actor: by.Name + " (" + by.ID + ")", Action: action,
		TargetType: a.TargetType, TargetID: a.TargetID, Outcome: outcome, Reason: reason, RequestID: web.RequestID(ctx)}
	if e.ActorType == "" {
		e.ActorType = mdmd.ActorAdmin
	}
	if e.TargetType == "" {
		e.TargetType, e.TargetID = "approval", a.ID
	}
	if details != nil {
		e.Details, _ = json.Marshal(details)
	}
	if err := s.st.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit append failed", "err", err, "action", action)
	}
}
