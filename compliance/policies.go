package compliance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// PolicyStore is what managing policies needs from storage.
type PolicyStore interface {
	CreateCompliancePolicy(ctx context.Context, p *mdmd.CompliancePolicy) error
	GetCompliancePolicy(ctx context.Context, id string) (*mdmd.CompliancePolicy, error)
	ListCompliancePolicies(ctx context.Context) ([]mdmd.CompliancePolicy, error)
	UpdateCompliancePolicy(ctx context.Context, p *mdmd.CompliancePolicy) error
	DeleteCompliancePolicy(ctx context.Context, id string) error
	AssignCompliancePolicy(ctx context.Context, a *mdmd.CompliancePolicyGroup) error
	UnassignCompliancePolicy(ctx context.Context, policyID, groupID string) error
	ListCompliancePolicyAssignments(ctx context.Context) ([]mdmd.CompliancePolicyGroup, error)
}

// Policies manages compliance policies and their group assignments, for
// the admin API and the web console alike: it validates the rules, and
// after every change it queues a sweep (when Jobs is set), so that every
// device is re-evaluated under the new rules.
type Policies struct {
	Store PolicyStore
	Jobs  Enqueuer
	Log   *slog.Logger
	Now   func() time.Time
}

// Policies returns the policy manager on st that queues its sweeps on the
// service's Jobs.
func (s *Service) Policies(st PolicyStore) *Policies {
	return &Policies{Store: st, Jobs: s.Jobs, Log: s.log, Now: s.now}
}

// PolicyInput is a policy as an administrator gives it. Rules is the JSON
// of a Policy's rules.
type PolicyInput struct {
	Name      string          `json:"name"`
	Platform  mdmd.Platform   `json:"platform"`
	IsDefault bool            `json:"is_default"`
	Rules     json.RawMessage `json:"rules"`
}

// stored validates the input's rules and turns it into a stored policy.
// A policy that applies to Android and does not mention
// max_patch_age_days gets the default of 90 days; 0 switches it off.
func (in *PolicyInput) stored() (*mdmd.CompliancePolicy, error) {
	if len(in.Rules) == 0 {
		in.Rules = json.RawMessage("{}")
	}
	var rules Policy
	if err := web.DecodeJSONBytes(in.Rules, &rules); err != nil {
		return nil, mdmd.FieldError("rules", "%v", err)
	}
	var given map[string]json.RawMessage
	_ = json.Unmarshal(in.Rules, &given)
	if _, ok := given["max_patch_age_days"]; !ok && in.Platform != mdmd.PlatformIOS {
		rules.MaxPatchAgeDays = DefaultPatchAgeDays
	}
	rules.ID, rules.Name, rules.Platform = "", "", in.Platform
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	rules.Platform = ""
	b, err := json.Marshal(rules)
	if err != nil {
		return nil, err
	}
	return &mdmd.CompliancePolicy{Name: in.Name, Platform: in.Platform, IsDefault: in.IsDefault, Rules: b}, nil
}

// changed queues one sweep per 10-second slot, due when the slot ends, so
// that a burst of changes is re-evaluated once and none is missed.
func (ps *Policies) changed(ctx context.Context) {
	if ps.Jobs == nil {
		return
	}
	now := time.Now
	if ps.Now != nil {
		now = ps.Now
	}
	const slot = 10 * time.Second
	end := now().Truncate(slot).Add(slot)
	key := fmt.Sprintf("%s/policy/%d", SweepJob, end.Unix())
	if _, err := ps.Jobs.Enqueue(ctx, &mdmd.Job{Kind: SweepJob, RunAt: end, MaxAttempts: 3, UniqueKey: &key}); err != nil && ps.Log != nil {
		ps.Log.Error("queueing a compliance sweep failed", "err", err)
	}
}

// List returns every policy by name.
func (ps *Policies) List(ctx context.Context) ([]mdmd.CompliancePolicy, error) {
	return ps.Store.ListCompliancePolicies(ctx)
}

// Get returns one policy.
func (ps *Policies) Get(ctx context.Context, id string) (*mdmd.CompliancePolicy, error) {
	return ps.Store.GetCompliancePolicy(ctx, id)
}

// Assignments returns every assignment of a policy to a group.
func (ps *Policies) Assignments(ctx context.Context) ([]mdmd.CompliancePolicyGroup, error) {
	return ps.Store.ListCompliancePolicyAssignments(ctx)
}

// Create validates and stores a new policy.
func (ps *Policies) Create(ctx context.Context, in PolicyInput) (*mdmd.CompliancePolicy, error) {
	p, err := in.stored()
	if err != nil {
		return nil, err
	}
	if err := ps.Store.CreateCompliancePolicy(ctx, p); err != nil {
		return nil, err
	}
	ps.changed(ctx)
	return p, nil
}

// Update replaces a policy's name, default flag and rules; its platform
// cannot change.
func (ps *Policies) Update(ctx context.Context, id string, in PolicyInput) (*mdmd.CompliancePolicy, error) {
	cur, err := ps.Store.GetCompliancePolicy(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.Platform != cur.Platform {
		return nil, mdmd.FieldError("platform", "a policy's platform cannot change")
	}
	p, err := in.stored()
	if err != nil {
		return nil, err
	}
	p.ID = cur.ID
	if err := ps.Store.UpdateCompliancePolicy(ctx, p); err != nil {
		return nil, err
	}
	ps.changed(ctx)
	return p, nil
}

// Delete removes a policy and its assignments.
func (ps *Policies) Delete(ctx context.Context, id string) error {
	if err := ps.Store.DeleteCompliancePolicy(ctx, id); err != nil {
		return err
	}
	ps.changed(ctx)
	return nil
}

// Assign assigns a policy to a group, or changes its priority there.
func (ps *Policies) Assign(ctx context.Context, a *mdmd.CompliancePolicyGroup) error {
	if err := ps.Store.AssignCompliancePolicy(ctx, a); err != nil {
		return err
	}
	ps.changed(ctx)
	return nil
}

// Unassign removes a policy from a group.
func (ps *Policies) Unassign(ctx context.Context, policyID, groupID string) error {
	if err := ps.Store.UnassignCompliancePolicy(ctx, policyID, groupID); err != nil {
		return err
	}
	ps.changed(ctx)
	return nil
}
