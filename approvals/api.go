package approvals

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// RegisterAPI adds the approval routes. Requests are made by the action
// routes themselves (a full wipe, a group wipe); these list and decide
// them. Deciding needs the permission the action needs (commands:wipe),
// and so does listing. The service audits every decision.
func (s *Service) RegisterAPI(reg web.Registrar) {
	reg.Handle("GET", "/approvals", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > mdmd.MaxPageSize {
				return mdmd.FieldError("limit", "must be an integer from 1 to %d", mdmd.MaxPageSize)
			}
			limit = n
		}
		as, err := s.List(r.Context(), r.URL.Query().Get("state"), limit)
		if err != nil {
			return err
		}
		if as == nil {
			as = []mdmd.Approval{}
		}
		web.WriteJSON(w, http.StatusOK, web.Page[mdmd.Approval]{Items: as})
		return nil
	})
	reg.Handle("GET", "/approvals/{id}", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, a)
		return nil
	})
	reg.Handle("POST", "/approvals/{id}/approve", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.Approve(r.Context(), web.PrincipalFrom(r.Context()), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"approval": a})
		return nil
	})
	reg.HandleJSON("POST", "/approvals/{id}/reject", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Reason string `json:"reason"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		a, err := s.Reject(r.Context(), web.PrincipalFrom(r.Context()), chi.URLParam(r, "id"), in.Reason)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"approval": a})
		return nil
	})
}
