package bulk

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// createInput is the body of a new bulk action.
type createInput struct {
	Filter      mdmd.BulkFilter `json:"filter"`
	Message     string          `json:"message"`
	PhoneNumber string          `json:"phone_number"`
	Mode        string          `json:"mode"`
	Reason      string          `json:"reason"`
	Confirm     string          `json:"confirm"`
	Push        *bool           `json:"push"`
	PreserveFRP *bool           `json:"preserve_frp"`
}

// RegisterAPI adds the bulk action routes. Each kind of action has its own
// route with the permission its single-device form needs; reading needs
// commands:read.
func (s *Service) RegisterAPI(reg web.Registrar) {
	create := func(kind string) web.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			var in createInput
			if err := web.DecodeJSON(r, &in); err != nil {
				return err
			}
			action := kind
			if kind == "wipe" {
				switch in.Mode {
				case "selective":
					action = mdmd.BulkWipeSelective
				case "full":
					action = mdmd.BulkWipeFull
				default:
					return mdmd.FieldError("mode", "must be selective or full, got %q", in.Mode)
				}
			} else if in.Mode != "" {
				return mdmd.FieldError("mode", "applies to a wipe only")
			}
			b, err := s.Create(r.Context(), web.PrincipalFrom(r.Context()), Request{Action: action, Filter: in.Filter,
				Params: mdmd.BulkParams{Message: strings.TrimSpace(in.Message), PhoneNumber: strings.TrimSpace(in.PhoneNumber),
					Push: in.Push, PreserveFRP: in.PreserveFRP}, Reason: strings.TrimSpace(in.Reason), Confirm: strings.TrimSpace(in.Confirm)})
			if err != nil {
				return err
			}
			web.WriteJSON(w, http.StatusAccepted, b)
			return nil
		}
	}
	reg.HandleJSON("POST", "/bulk-actions/query", mdmd.PermCommandsQuery, create(mdmd.BulkQuery))
	reg.HandleJSON("POST", "/bulk-actions/lock", mdmd.PermCommandsLock, create(mdmd.BulkLock))
	reg.HandleJSON("POST", "/bulk-actions/wipe", mdmd.PermCommandsWipe, create("wipe"))
	reg.Handle("GET", "/bulk-actions", mdmd.PermCommandsRead, func(w http.ResponseWriter, r *http.Request) error {
		limit, err := web.QueryLimit(r)
		if err != nil {
			return err
		}
		bs, err := s.List(r.Context(), limit)
		if err != nil {
			return err
		}
		if bs == nil {
			bs = []mdmd.BulkAction{}
		}
		web.WriteJSON(w, http.StatusOK, web.Page[mdmd.BulkAction]{Items: bs})
		return nil
	})
	reg.Handle("GET", "/bulk-actions/{id}", mdmd.PermCommandsRead, func(w http.ResponseWriter, r *http.Request) error {
		st, err := s.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, st.For(web.PrincipalFrom(r.Context()).Role))
		return nil
	})
	// Cancelling needs, beyond this route's permission, the one the
	// action's kind needs (checked by the service).
	reg.HandleJSON("POST", "/bulk-actions/{id}/cancel", mdmd.PermCommandsQuery, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Reason string `json:"reason"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		b, err := s.Cancel(r.Context(), web.PrincipalFrom(r.Context()), chi.URLParam(r, "id"), strings.TrimSpace(in.Reason))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, b)
		return nil
	})
	reg.Handle("GET", "/bulk-actions/{id}/devices", mdmd.PermCommandsRead, func(w http.ResponseWriter, r *http.Request) error {
		limit, err := web.QueryLimit(r)
		if err != nil {
			return err
		}
		q := r.URL.Query()
		ts, next, err := s.Targets(r.Context(), chi.URLParam(r, "id"), q.Get("state"), q.Get("cursor"), limit)
		if err != nil {
			return err
		}
		if ts == nil {
			ts = []mdmd.BulkTarget{}
		}
		web.WriteJSON(w, http.StatusOK, web.Page[mdmd.BulkTarget]{Items: ts, NextCursor: next})
		return nil
	})
}
