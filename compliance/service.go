package compliance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdmd/mdmd"
)

// Store is what the compliance service needs from storage.
type Store interface {
	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	GetPosture(ctx context.Context, deviceID string) (*mdmd.Posture, error)
	DeviceProfiles(ctx context.Context, deviceID string) ([]mdmd.DeviceProfile, error)
	PolicyForDevice(ctx context.Context, deviceID string) (*mdmd.CompliancePolicy, error)
	GetCompliance(ctx context.Context, deviceID string) (*mdmd.DeviceCompliance, error)
	RecordCompliance(ctx context.Context, c *mdmd.DeviceCompliance, cause string) (prev string, changed bool, err error)
	DevicesDueForCompliance(ctx context.Context, before time.Time, limit int) ([]string, error)
}

// Service evaluates devices against their policies and stores the result.
type Service struct {
	st  Store
	log *slog.Logger
	now func() time.Time
}

// NewService returns a service; now may be nil for the wall clock.
func NewService(st Store, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, log: log, now: now}
}

// Result is one device's evaluation and whether its state changed.
type Result struct {
	Evaluation
	PolicyID  string `json:"policy_id,omitempty"`
	Previous  string `json:"previous_state,omitempty"`
	Changed   bool   `json:"changed"`
	DeviceID  string `json:"device_id"`
	Platform  string `json:"platform"`
	OwnerUser string `json:"owner_user,omitempty"`
}

// EvaluateDevice evaluates a device now and records the result; cause says
// why (posture, policy, schedule) and is kept with any change of state.
func (s *Service) EvaluateDevice(ctx context.Context, deviceID, cause string) (*Result, error) {
	// The time is taken before anything is read: storage keeps the newest
	// evaluation, so one that read older data can never overwrite it.
	now := s.now()
	snap, d, err := s.snapshot(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	res := &Result{DeviceID: deviceID, Platform: string(snap.Platform), OwnerUser: d.OwnerUser}
	stored, err := s.st.PolicyForDevice(ctx, deviceID)
	switch {
	case mdmd.IsCode(err, mdmd.ENotFound):
		// Never trust what no policy vouches for.
		res.Evaluation = Evaluation{State: StateNotEvaluated, Reason: "no compliance policy applies to this device", EvaluatedAt: now.UTC()}
	case err != nil:
		return nil, err
	default:
		res.PolicyID = stored.ID
		var p Policy
		if err := json.Unmarshal(stored.Rules, &p); err != nil {
			res.Evaluation = Evaluation{State: StateError, Reason: "policy " + stored.Name + " cannot be read: " + err.Error(), EvaluatedAt: now.UTC()}
		} else {
			p.ID, p.Name, p.Platform = stored.ID, stored.Name, stored.Platform
			res.Evaluation = Evaluate(*snap, p, now)
		}
	}
	rules, _ := json.Marshal(res.Rules)
	rec := &mdmd.DeviceCompliance{DeviceID: deviceID, State: string(res.State), PolicyID: res.PolicyID, Reason: res.Reason,
		Rules: rules, FailingSince: res.FailingSince, GraceEndsAt: res.GraceEndsAt, EvaluatedAt: res.EvaluatedAt}
	res.Previous, res.Changed, err = s.st.RecordCompliance(ctx, rec, cause)
	if err != nil {
		return nil, err
	}
	if res.Changed {
		s.log.Info("compliance changed", "device_id", deviceID, "from", res.Previous, "to", res.State, "cause", cause, "reason", res.Reason)
	}
	return res, nil
}

// Snapshot gathers what Evaluate needs to know about a device.
func (s *Service) Snapshot(ctx context.Context, deviceID string) (*Snapshot, error) {
	snap, _, err := s.snapshot(ctx, deviceID)
	return snap, err
}

func (s *Service) snapshot(ctx context.Context, deviceID string) (*Snapshot, *mdmd.Device, error) {
	d, err := s.st.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, nil, err
	}
	snap := &Snapshot{Platform: d.Platform, EnrollmentState: d.EnrollmentState, LastSeenAt: d.LastSeenAt}
	switch p, err := s.st.GetPosture(ctx, deviceID); {
	case err == nil:
		snap.Posture = p
		var details struct {
			DevicePosture string `json:"device_posture"`
		}
		if len(p.Details) > 0 && json.Unmarshal(p.Details, &details) == nil {
			snap.AndroidPosture = details.DevicePosture
		}
	case !mdmd.IsCode(err, mdmd.ENotFound):
		return nil, nil, err
	}
	if d.Platform == mdmd.PlatformIOS {
		dps, err := s.st.DeviceProfiles(ctx, deviceID)
		if err != nil {
			return nil, nil, err
		}
		snap.Profiles = []string{}
		for _, dp := range dps {
			if dp.State == "installed" {
				snap.Profiles = append(snap.Profiles, dp.Identifier)
			}
		}
	}
	switch prev, err := s.st.GetCompliance(ctx, deviceID); {
	case err == nil:
		snap.FailingSince = prev.FailingSince
	case !mdmd.IsCode(err, mdmd.ENotFound):
		return nil, nil, err
	}
	return snap, d, nil
}

// SweepJob is the periodic job that re-evaluates every device, so that
// staleness (a silent device, an aging patch) bites with no contact.
const SweepJob = "compliance.sweep"

// Sweep evaluates every device not evaluated since the sweep began, oldest
// evaluation first. It stops when ctx ends; the next sweep carries on with
// the devices this one did not reach. It returns how many it evaluated.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	start := s.now()
	n := 0
	seen := map[string]bool{}
	for {
		ids, err := s.st.DevicesDueForCompliance(ctx, start, 200)
		if err != nil {
			return n, err
		}
		if len(ids) == 0 {
			return n, nil
		}
		for _, id := range ids {
			if seen[id] {
				// Its evaluation did not stick: stop rather than loop.
				return n, fmt.Errorf("compliance sweep: device %s is still due after its evaluation", id)
			}
			seen[id] = true
			if _, err := s.EvaluateDevice(ctx, id, "schedule"); err != nil {
				if ctx.Err() != nil {
					return n, ctx.Err()
				}
				if !mdmd.IsCode(err, mdmd.ENotFound) { // deleted meanwhile
					return n, err
				}
			}
			n++
		}
	}
}
