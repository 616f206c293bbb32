package webhooks

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// endpointInput is the body of POST /webhooks.
type endpointInput struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Enabled    *bool    `json:"enabled"` // default true
}

// endpointPatch is the body of PATCH /webhooks/{id}: absent fields stay.
type endpointPatch struct {
	Name       *string   `json:"name"`
	URL        *string   `json:"url"`
	EventTypes *[]string `json:"event_types"`
	Enabled    *bool     `json:"enabled"`
}

// withSecret is an endpoint with its secret, shown once.
type withSecret struct {
	*mdmd.WebhookEndpoint
	Secret string `json:"secret"`
}

// DeliveryView is a delivery with its attempt log.
type DeliveryView struct {
	mdmd.WebhookDelivery
	AttemptLog []mdmd.WebhookAttempt `json:"attempt_log"`
}

// RegisterAPI adds the webhook routes. All need settings:manage: the
// delivery log holds device data.
func (s *Service) RegisterAPI(reg web.Registrar) {
	const perm = mdmd.PermSettingsManage
	reg.HandleJSON("POST", "/webhooks", perm, func(w http.ResponseWriter, r *http.Request) error {
		var in endpointInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		e := &mdmd.WebhookEndpoint{Name: in.Name, URL: in.URL, EventTypes: in.EventTypes, Enabled: in.Enabled == nil || *in.Enabled}
		sec, err := s.CreateEndpoint(r.Context(), e)
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.create", "webhook_endpoint", e.ID, mdmd.OutcomeSuccess, "", CreateAudit(e))
		web.WriteJSON(w, http.StatusCreated, withSecret{e, sec})
		return nil
	})
	reg.Handle("GET", "/webhooks", perm, func(w http.ResponseWriter, r *http.Request) error {
		es, err := s.Endpoints(r.Context())
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": es})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		e, err := s.Endpoint(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, e)
		return nil
	})
	reg.HandleJSON("PATCH", "/webhooks/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		var in endpointPatch
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		u := mdmd.WebhookEndpointUpdate{Name: in.Name, URL: in.URL, EventTypes: in.EventTypes, Enabled: in.Enabled}
		e, err := s.UpdateEndpoint(r.Context(), id, u)
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.update", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", UpdateAudit(u))
		web.WriteJSON(w, http.StatusOK, e)
		return nil
	})
	reg.Handle("DELETE", "/webhooks/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := s.DeleteEndpoint(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "webhook.delete", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	// ?keep_previous=false forgets the old secret at once (it leaked);
	// by default it goes on signing for PreviousSecretValidity.
	reg.Handle("POST", "/webhooks/{id}/rotate-secret", perm, func(w http.ResponseWriter, r *http.Request) error {
		keep := true
		if v := r.URL.Query().Get("keep_previous"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return mdmd.FieldError("keep_previous", "must be true or false")
			}
			keep = b
		}
		id := chi.URLParam(r, "id")
		e, sec, err := s.RotateSecret(r.Context(), id, keep)
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.rotate_secret", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", RotateAudit(e))
		web.WriteJSON(w, http.StatusOK, withSecret{e, sec})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}/deliveries", perm, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		limit := 0
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > mdmd.MaxPageSize {
				return mdmd.FieldError("limit", "must be an integer from 1 to %d", mdmd.MaxPageSize)
			}
			limit = n
		}
		views, next, err := s.Deliveries(r.Context(), mdmd.WebhookDeliveryFilter{EndpointID: chi.URLParam(r, "id"),
			State: q.Get("state"), After: q.Get("cursor"), Limit: limit})
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, web.Page[DeliveryView]{Items: views, NextCursor: next})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}/deliveries/{delivery}", perm, func(w http.ResponseWriter, r *http.Request) error {
		v, err := s.Delivery(r.Context(), chi.URLParam(r, "id"), chi.URLParam(r, "delivery"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, v)
		return nil
	})
	reg.Handle("POST", "/webhooks/{id}/deliveries/{delivery}/redeliver", perm, func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.Redeliver(r.Context(), chi.URLParam(r, "id"), chi.URLParam(r, "delivery"))
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.redeliver", "webhook_endpoint", d.EndpointID, mdmd.OutcomeSuccess, "", RedeliverAudit(d))
		web.WriteJSON(w, http.StatusAccepted, d)
		return nil
	})
	reg.Handle("POST", "/webhooks/{id}/test", perm, func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.SendTest(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.test", "webhook_endpoint", d.EndpointID, mdmd.OutcomeSuccess, "", PingAudit(d))
		web.WriteJSON(w, http.StatusAccepted, d)
		return nil
	})
}
