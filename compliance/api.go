package compliance

import (
	"context"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// APIStore is what the compliance API needs from storage beyond Store.
type APIStore interface {
	Store
	PolicyStore
	GetCompliance(ctx context.Context, deviceID string) (*mdmd.DeviceCompliance, error)
	ListComplianceChanges(ctx context.Context, after int64, limit int) ([]mdmd.ComplianceChange, error)
}

// Enqueuer queues background jobs.
type Enqueuer interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// API is the admin API for policies, device states and the change feed.
type API struct {
	Service *Service
	Store   APIStore
	// Jobs, if set, gets a sweep after every policy change, so that every
	// device is re-evaluated under the new rules.
	Jobs Enqueuer
}

// policies is the policy manager behind the API's policy routes.
func (a API) policies() *Policies {
	ps := &Policies{Store: a.Store, Jobs: a.Jobs}
	if a.Service != nil {
		ps.Log = a.Service.log
	}
	return ps
}

// RegisterAPI adds the compliance routes.
func (a API) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/compliance/policies", mdmd.PermComplianceManage, func(w http.ResponseWriter, r *http.Request) error {
		var in PolicyInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		p, err := a.policies().Create(r.Context(), in)
		if err != nil {
			return err
		}
		reg.Audit(r, "compliance.policy.create", "compliance_policy", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": p.Name})
		web.WriteJSON(w, http.StatusCreated, p)
		return nil
	})
	reg.Handle("GET", "/compliance/policies", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		ps, err := a.Store.ListCompliancePolicies(r.Context())
		if err != nil {
			return err
		}
		if ps == nil {
			ps = []mdmd.CompliancePolicy{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": ps})
		return nil
	})
	reg.Handle("GET", "/compliance/policies/{id}", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.Store.GetCompliancePolicy(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	reg.HandleJSON("PUT", "/compliance/policies/{id}", mdmd.PermComplianceManage, func(w http.ResponseWriter, r *http.Request) error {
		var in PolicyInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		p, err := a.policies().Update(r.Context(), chi.URLParam(r, "id"), in)
		if err != nil {
			return err
		}
		reg.Audit(r, "compliance.policy.update", "compliance_policy", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"version": p.Version})
		web.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	reg.Handle("DELETE", "/compliance/policies/{id}", mdmd.PermComplianceManage, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := a.policies().Delete(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "compliance.policy.delete", "compliance_policy", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	reg.HandleJSON("PUT", "/compliance/policies/{id}/groups/{group}", mdmd.PermComplianceManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Priority int `json:"priority"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		as := &mdmd.CompliancePolicyGroup{PolicyID: chi.URLParam(r, "id"), GroupID: chi.URLParam(r, "group"), Priority: in.Priority}
		if err := a.policies().Assign(r.Context(), as); err != nil {
			return err
		}
		reg.Audit(r, "compliance.policy.assign", "compliance_policy", as.PolicyID, mdmd.OutcomeSuccess, "",
			map[string]any{"group_id": as.GroupID, "priority": as.Priority})
		web.WriteJSON(w, http.StatusOK, as)
		return nil
	})
	reg.Handle("DELETE", "/compliance/policies/{id}/groups/{group}", mdmd.PermComplianceManage, func(w http.ResponseWriter, r *http.Request) error {
		id, group := chi.URLParam(r, "id"), chi.URLParam(r, "group")
		if err := a.policies().Unassign(r.Context(), id, group); err != nil {
			return err
		}
		reg.Audit(r, "compliance.policy.unassign", "compliance_policy", id, mdmd.OutcomeSuccess, "", map[string]any{"group_id": group})
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	reg.Handle("GET", "/devices/{id}/compliance", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.Store.GetCompliance(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, c)
		return nil
	})
	reg.Handle("POST", "/devices/{id}/compliance/evaluate", mdmd.PermCommandsQuery, func(w http.ResponseWriter, r *http.Request) error {
		res, err := a.Service.EvaluateDevice(r.Context(), chi.URLParam(r, "id"), "admin")
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, res)
		return nil
	})
	// The feed of state changes: resume with ?after= the last seq seen.
	reg.Handle("GET", "/compliance/changes", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		var after int64
		if v := q.Get("after"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return mdmd.FieldError("after", "must be a sequence number from an earlier page")
			}
			after = n
		}
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > mdmd.MaxPageSize {
				return mdmd.FieldError("limit", "must be between 1 and %d", mdmd.MaxPageSize)
			}
			limit = n
		}
		items, err := a.Store.ListComplianceChanges(r.Context(), after, limit)
		if err != nil {
			return err
		}
		next := after
		if len(items) > 0 {
			next = items[len(items)-1].Seq
		}
		if items == nil {
			items = []mdmd.ComplianceChange{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": items, "next_after": next, "more": len(items) == limit})
		return nil
	})
}
