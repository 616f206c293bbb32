package compliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mdmd/mdmd"
)

// Store is what the compliance service needs from storage.
type Store interface {
	ComplianceInputs(ctx context.Context, ids []string) ([]mdmd.ComplianceInput, error)
	RecordCompliances(ctx context.Context, rows []*mdmd.DeviceCompliance, cause string) ([]mdmd.ComplianceRecorded, error)
	DeviceIDsAfter(ctx context.Context, after string, limit int) ([]string, error)
	ClaimDirtyDevices(ctx context.Context, limit int, lease time.Duration) ([]mdmd.DirtyMark, error)
	ClearDirtyDevices(ctx context.Context, marks []mdmd.DirtyMark) error
	GetSetting(ctx context.Context, key string) (string, error)
	PutSetting(ctx context.Context, key, value string) error
}

// Service evaluates devices against their policies and stores the result.
type Service struct {
	st    Store
	log   *slog.Logger
	now   func() time.Time
	batch int
	wake  chan struct{}
	// Jobs, if set, gets a run of the noncompliance actions whenever a
	// device begins failing.
	Jobs Enqueuer
}

// NewService returns a service; now may be nil for the wall clock.
func NewService(st Store, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, log: log, now: now, batch: 1000, wake: make(chan struct{}, 1)}
}

// SetBatchSize sets how many devices are read and written together
// (default 1000).
func (s *Service) SetBatchSize(n int) {
	if n > 0 {
		s.batch = n
	}
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
	res, err := s.EvaluateDevices(ctx, []string{deviceID}, cause)
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "no device %s", deviceID)
	}
	return &res[0], nil
}

// EvaluateDevices evaluates devices together, reading and writing them in
// a fixed number of queries per batch; devices that do not exist are left
// out of the results.
func (s *Service) EvaluateDevices(ctx context.Context, ids []string, cause string) ([]Result, error) {
	// The time is taken before anything is read: storage keeps the newest
	// evaluation, so one that read older data can never overwrite it.
	now := s.now()
	inputs, err := s.st.ComplianceInputs(ctx, ids)
	if err != nil || len(inputs) == 0 {
		return nil, err
	}
	policies := map[string]*Policy{} // parsed once per batch
	results := make([]Result, len(inputs))
	rows := make([]*mdmd.DeviceCompliance, len(inputs))
	for i := range inputs {
		in := &inputs[i]
		res := &results[i]
		*res = Result{DeviceID: in.Device.ID, Platform: string(in.Device.Platform), OwnerUser: in.Device.OwnerUser}
		if in.Policy == nil {
			// Never trust what no policy vouches for.
			res.Evaluation = Evaluation{State: StateNotEvaluated, Reason: "no compliance policy applies to this device", EvaluatedAt: now.UTC()}
		} else {
			res.PolicyID = in.Policy.ID
			p, err := parsePolicy(policies, in.Policy)
			if err != nil {
				res.Evaluation = Evaluation{State: StateError, Reason: "policy " + in.Policy.Name + " cannot be read: " + err.Error(), EvaluatedAt: now.UTC()}
			} else {
				res.Evaluation = Evaluate(SnapshotOf(in), *p, now)
			}
		}
		rules, _ := json.Marshal(res.Rules)
		rows[i] = &mdmd.DeviceCompliance{DeviceID: res.DeviceID, State: string(res.State), PolicyID: res.PolicyID, Reason: res.Reason,
			Rules: rules, FailingSince: res.FailingSince, GraceEndsAt: res.GraceEndsAt, EvaluatedAt: res.EvaluatedAt}
	}
	recorded, err := s.st.RecordCompliances(ctx, rows, cause)
	if err != nil {
		return nil, err
	}
	failing := false
	for i, r := range recorded {
		results[i].Previous, results[i].Changed = r.Previous, r.Changed
		if r.Changed {
			s.log.Info("compliance changed", "device_id", results[i].DeviceID, "from", r.Previous, "to", results[i].State,
				"cause", cause, "reason", results[i].Reason)
			failing = failing || results[i].State == StateNoncompliant || results[i].State == StateInGrace
		}
	}
	if failing && s.Jobs != nil {
		// Actions due at once (after 0 days) need not wait for the
		// scheduler's next round.
		key := fmt.Sprintf("%s/%d", ActionsJob, now.Unix())
		if _, err := s.Jobs.Enqueue(ctx, &mdmd.Job{Kind: ActionsJob, RunAt: now, MaxAttempts: 3, UniqueKey: &key}); err != nil {
			s.log.Error("queueing noncompliance actions failed", "err", err)
		}
	}
	return results, nil
}

func parsePolicy(cache map[string]*Policy, stored *mdmd.CompliancePolicy) (*Policy, error) {
	if p := cache[stored.ID]; p != nil {
		return p, nil
	}
	var p Policy
	if err := json.Unmarshal(stored.Rules, &p); err != nil {
		return nil, err
	}
	p.ID, p.Name, p.Platform = stored.ID, stored.Name, stored.Platform
	cache[stored.ID] = &p
	return &p, nil
}

// SnapshotOf turns stored inputs into what Evaluate needs.
func SnapshotOf(in *mdmd.ComplianceInput) Snapshot {
	d := &in.Device
	snap := Snapshot{Platform: d.Platform, EnrollmentState: d.EnrollmentState, LastSeenAt: d.LastSeenAt,
		Posture: in.Posture, Profiles: in.Profiles}
	if p := in.Posture; p != nil && len(p.Details) > 0 {
		var details struct {
			DevicePosture string `json:"device_posture"`
		}
		if json.Unmarshal(p.Details, &details) == nil {
			snap.AndroidPosture = details.DevicePosture
		}
	}
	if t := in.Threat; t != nil {
		// Freshness is when the partner last vouched for the device.
		snap.Threat = &Threat{Level: ThreatLevel(t.Level), Compromised: t.Compromised, Source: t.Source, ReportedAt: t.HeartbeatAt}
	}
	if in.Current != nil {
		snap.FailingSince = in.Current.FailingSince
	}
	return snap
}

// Snapshot gathers what Evaluate needs to know about a device.
func (s *Service) Snapshot(ctx context.Context, deviceID string) (*Snapshot, error) {
	in, err := s.st.ComplianceInputs(ctx, []string{deviceID})
	if err != nil {
		return nil, err
	}
	if len(in) == 0 {
		return nil, mdmd.Errorf(mdmd.ENotFound, "no device %s", deviceID)
	}
	snap := SnapshotOf(&in[0])
	return &snap, nil
}

// SweepJob is the periodic job that re-evaluates every device, so that
// staleness (a silent device, an aging patch) bites with no contact.
const SweepJob = "compliance.sweep"

// sweepCursor is the setting that holds the last device a sweep reached.
const sweepCursor = "compliance.sweep.cursor"

// Sweep evaluates every device in batches, in ID order, three batches at
// a time (so that reading, evaluating and writing overlap on the database
// and in Go). The position is saved after every round: a sweep cut short (ctx ended, a crash) is carried on by the
// next one from where it stopped. It returns how many devices it
// evaluated.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	after, err := s.st.GetSetting(ctx, sweepCursor)
	if err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
		return 0, err
	}
	const parallel = 3
	n := 0
	for {
		ids, err := s.st.DeviceIDsAfter(ctx, after, parallel*s.batch)
		if err != nil {
			return n, err
		}
		if len(ids) == 0 {
			return n, s.st.PutSetting(ctx, sweepCursor, "")
		}
		var wg sync.WaitGroup
		counts, errs := make([]int, parallel), make([]error, parallel)
		for i, chunk := range slices.Collect(slices.Chunk(ids, s.batch)) {
			wg.Go(func() {
				res, err := s.EvaluateDevices(ctx, chunk, "schedule")
				counts[i], errs[i] = len(res), err
			})
		}
		wg.Wait()
		for i := range parallel {
			n += counts[i]
		}
		if err := errors.Join(errs...); err != nil {
			return n, err
		}
		after = ids[len(ids)-1]
		if err := s.st.PutSetting(ctx, sweepCursor, after); err != nil {
			return n, err
		}
	}
}

// EvaluateDirty evaluates devices whose inputs changed (posture, threat,
// enrollment, groups) until none is left, and returns how many it
// evaluated. Replicas share the work: each claims its own batches.
func (s *Service) EvaluateDirty(ctx context.Context) (int, error) {
	n := 0
	for {
		marks, err := s.st.ClaimDirtyDevices(ctx, s.batch, time.Minute)
		if err != nil || len(marks) == 0 {
			return n, err
		}
		ids := make([]string, len(marks))
		for i, m := range marks {
			ids[i] = m.DeviceID
		}
		res, err := s.EvaluateDevices(ctx, ids, "posture")
		if err != nil {
			return n, err // the claims lapse and another pass retries
		}
		n += len(res)
		if err := s.st.ClearDirtyDevices(ctx, marks); err != nil {
			return n, err
		}
	}
}

// Wake makes RunDirty look for changed devices now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunDirty evaluates changed devices until ctx ends: at once when woken
// (after this process's writes) and every poll otherwise (for other
// replicas' writes and to retry after errors).
func (s *Service) RunDirty(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if _, err := s.EvaluateDirty(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("evaluating changed devices failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}
