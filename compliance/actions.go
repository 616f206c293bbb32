package compliance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/web"
)

// ActionStore is what the noncompliance actions need from storage.
type ActionStore interface {
	FailingDevices(ctx context.Context, after string, limit int) ([]mdmd.FailingDevice, error)
	EpisodeActions(ctx context.Context, deviceIDs []string) ([]mdmd.ComplianceAction, error)
	StartComplianceAction(ctx context.Context, a *mdmd.ComplianceAction) (bool, error)
	FinishComplianceAction(ctx context.Context, id, from string, a mdmd.ComplianceAction) (*mdmd.ComplianceAction, error)
	GetComplianceAction(ctx context.Context, id string) (*mdmd.ComplianceAction, error)
	ListComplianceActions(ctx context.Context, state, deviceID string, limit int) ([]mdmd.ComplianceAction, error)
	StaleComplianceActions(ctx context.Context, before time.Time) (running, ended []mdmd.ComplianceAction, err error)
	ReclaimComplianceAction(ctx context.Context, id string, before time.Time) (bool, error)
	ApproveComplianceAction(ctx context.Context, id, by string) (*mdmd.ComplianceAction, error)
	GetCompliancePolicy(ctx context.Context, id string) (*mdmd.CompliancePolicy, error)
}

// Actuator carries out actions on devices (the command service).
type Actuator interface {
	Lock(ctx context.Context, deviceID, by string, push bool, lock commands.DeviceLock) ([]*mdmd.Command, error)
	SelectiveWipe(ctx context.Context, deviceID, by, reason string, push bool) ([]*mdmd.Command, error)
}

// ActionsJob is the periodic job that takes due noncompliance actions.
const ActionsJob = "compliance.actions"

// Actions takes each policy's noncompliance actions against failing
// devices, once per episode of failing: notify, lock, and selective wipe
// after an admin's approval ("mark" is the grace period, applied by
// evaluation). Replicas may run it at once: storage lets exactly one of
// them start each action.
type Actions struct {
	Store ActionStore
	Do    Actuator
	Log   *slog.Logger
	Now   func() time.Time
}

func (a *Actions) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Run takes every due action and returns how many it started.
func (a *Actions) Run(ctx context.Context) (int, error) {
	now := a.now()
	started := 0
	policies := map[string]*Policy{}
	after := ""
	for {
		failing, err := a.Store.FailingDevices(ctx, after, 1000)
		if err != nil || len(failing) == 0 {
			if err == nil {
				err = a.tidy(ctx, now)
			}
			return started, err
		}
		after = failing[len(failing)-1].DeviceID
		ids := make([]string, len(failing))
		for i, f := range failing {
			ids[i] = f.DeviceID
		}
		taken, err := a.Store.EpisodeActions(ctx, ids)
		if err != nil {
			return started, err
		}
		done := map[string]bool{}
		for _, t := range taken {
			done[actionKey(t.DeviceID, t.Episode, t.Action)] = true
		}
		for _, f := range failing {
			p, err := a.policy(ctx, policies, f.PolicyID)
			if err != nil {
				a.Log.Warn("a failing device's policy cannot be read; its actions wait", "device_id", f.DeviceID, "policy_id", f.PolicyID, "err", err)
				continue
			}
			for _, rule := range p.Actions {
				if rule.Action == ActionMark || done[actionKey(f.DeviceID, f.FailingSince, rule.Action)] ||
					now.Before(f.FailingSince.Add(time.Duration(rule.AfterDays)*day)) {
					continue
				}
				ok, err := a.start(ctx, f, rule.Action)
				if err != nil {
					return started, err
				}
				if ok {
					started++
				}
			}
		}
	}
}

func actionKey(deviceID string, episode time.Time, action string) string {
	return deviceID + "|" + strconv.FormatInt(episode.UTC().UnixMicro(), 10) + "|" + action
}

func (a *Actions) policy(ctx context.Context, cache map[string]*Policy, id string) (*Policy, error) {
	if id == "" {
		return &Policy{}, nil
	}
	if p, ok := cache[id]; ok {
		return p, nil
	}
	stored, err := a.Store.GetCompliancePolicy(ctx, id)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		cache[id] = &Policy{} // deleted: no actions
		return cache[id], nil
	}
	if err != nil {
		return nil, err
	}
	p, err := parsePolicy(cache, stored)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// start records the action for the episode and, if this call recorded it,
// carries it out (a wipe only waits for approval).
func (a *Actions) start(ctx context.Context, f mdmd.FailingDevice, action string) (bool, error) {
	row := &mdmd.ComplianceAction{DeviceID: f.DeviceID, Episode: f.FailingSince, Action: action, PolicyID: f.PolicyID,
		State: mdmd.ActionRunning}
	if action == ActionSelectiveWipe {
		row.State, row.Detail = mdmd.ActionPendingApproval, "a selective wipe waits for an administrator's approval"
	}
	ok, err := a.Store.StartComplianceAction(ctx, row)
	if err != nil || !ok {
		return false, err
	}
	a.Log.Info("noncompliance action", "device_id", f.DeviceID, "action", action, "state", row.State)
	if row.State == mdmd.ActionRunning {
		return true, a.execute(ctx, row, "")
	}
	return true, nil
}

// execute carries out a running action and records how it ended.
func (a *Actions) execute(ctx context.Context, row *mdmd.ComplianceAction, approver string) error {
	by := "compliance"
	if approver != "" {
		by = "compliance (approved by " + approver + ")"
	}
	var cmds []*mdmd.Command
	var err error
	switch row.Action {
	case ActionNotify:
		// The action's own event is the notification.
	case ActionLock:
		cmds, err = a.Do.Lock(ctx, row.DeviceID, by, true, commands.DeviceLock{Message: "This device is locked because it does not meet your organisation's compliance policy."})
	case ActionSelectiveWipe:
		cmds, err = a.Do.SelectiveWipe(ctx, row.DeviceID, by, "the device stayed out of compliance", true)
	default:
		err = fmt.Errorf("unknown action %q", row.Action)
	}
	end := mdmd.ComplianceAction{State: mdmd.ActionDone, DecidedBy: approver}
	if err != nil {
		end.State, end.Detail = mdmd.ActionFailed, err.Error()
		a.Log.Warn("noncompliance action failed", "device_id", row.DeviceID, "action", row.Action, "err", err)
	}
	var ids []string
	for _, c := range cmds {
		ids = append(ids, c.ID)
	}
	end.CommandID = strings.Join(ids, ",")
	_, ferr := a.Store.FinishComplianceAction(ctx, row.ID, mdmd.ActionRunning, end)
	return ferr
}

// tidy restarts actions whose scheduler stopped midway and cancels
// approvals whose episode ended.
func (a *Actions) tidy(ctx context.Context, now time.Time) error {
	before := now.Add(-10 * time.Minute)
	running, ended, err := a.Store.StaleComplianceActions(ctx, before)
	if err != nil {
		return err
	}
	for i := range running {
		// Of schedulers that overlap, only the one that reclaims it acts.
		ok, err := a.Store.ReclaimComplianceAction(ctx, running[i].ID, before)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := a.execute(ctx, &running[i], running[i].DecidedBy); err != nil && !mdmd.IsCode(err, mdmd.EConflict) {
			return err
		}
	}
	for _, e := range ended {
		_, err := a.Store.FinishComplianceAction(ctx, e.ID, mdmd.ActionPendingApproval,
			mdmd.ComplianceAction{State: mdmd.ActionCancelled, Detail: "the episode ended before anyone approved"})
		if err != nil && !mdmd.IsCode(err, mdmd.EConflict) {
			return err
		}
	}
	return nil
}

// Decide approves or rejects a pending wipe. Approval carries it out.
func (a *Actions) Decide(ctx context.Context, id, by string, approve bool, reason string) (*mdmd.ComplianceAction, error) {
	if !approve {
		return a.Store.FinishComplianceAction(ctx, id, mdmd.ActionPendingApproval,
			mdmd.ComplianceAction{State: mdmd.ActionRejected, DecidedBy: by, Detail: reason})
	}
	row, err := a.Store.ApproveComplianceAction(ctx, id, by)
	if err != nil {
		return nil, err
	}
	if err := a.execute(ctx, row, by); err != nil {
		return nil, err
	}
	return a.Store.GetComplianceAction(ctx, id)
}

// RegisterAPI adds the routes that list actions and decide wipes.
func (a *Actions) RegisterAPI(reg web.Registrar) {
	reg.Handle("GET", "/compliance/actions", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		items, err := a.Store.ListComplianceActions(r.Context(), q.Get("state"), q.Get("device_id"), 200)
		if err != nil {
			return err
		}
		if items == nil {
			items = []mdmd.ComplianceAction{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": items})
		return nil
	})
	decide := func(approve bool) web.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			var in struct {
				Reason string `json:"reason"`
			}
			if err := web.DecodeJSON(r, &in); err != nil {
				return err
			}
			if len(in.Reason) > 500 || (!approve && strings.TrimSpace(in.Reason) == "") {
				return mdmd.FieldError("reason", "required to reject, at most 500 characters")
			}
			by := ""
			if p := web.PrincipalFrom(r.Context()); p != nil {
				by = p.Name
			}
			id := chi.URLParam(r, "id")
			cur, err := a.Store.GetComplianceAction(r.Context(), id)
			if err != nil {
				return err
			}
			if cur.Action != ActionSelectiveWipe {
				return mdmd.Errorf(mdmd.EConflict, "only wipes wait for approval")
			}
			row, err := a.Decide(r.Context(), id, by, approve, in.Reason)
			if err != nil {
				return err
			}
			verb := map[bool]string{true: "approve", false: "reject"}[approve]
			details, _ := json.Marshal(map[string]any{"device_id": row.DeviceID, "state": row.State})
			reg.Audit(r, "compliance.action."+verb, "compliance_action", id, mdmd.OutcomeSuccess, in.Reason, json.RawMessage(details))
			web.WriteJSON(w, http.StatusOK, row)
			return nil
		}
	}
	reg.HandleJSON("POST", "/compliance/actions/{id}/approve", mdmd.PermCommandsWipe, decide(true))
	reg.HandleJSON("POST", "/compliance/actions/{id}/reject", mdmd.PermCommandsWipe, decide(false))
}
