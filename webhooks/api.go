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

func (s *Service) views(r *http.Request, ds []mdmd.WebhookDelivery) ([]DeliveryView, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	as, err := s.st.ListWebhookAttempts(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	byID := map[string][]mdmd.WebhookAttempt{}
	for _, a := range as {
		byID[a.DeliveryID] = append(byID[a.DeliveryID], a)
	}
	out := make([]DeliveryView, len(ds))
	for i, d := range ds {
		out[i] = DeliveryView{WebhookDelivery: d, AttemptLog: byID[d.ID]}
		if out[i].AttemptLog == nil {
			out[i].AttemptLog = []mdmd.WebhookAttempt{}
		}
	}
	return out, nil
}

// delivery returns a delivery of the endpoint in the URL.
func (s *Service) delivery(r *http.Request) (*mdmd.WebhookDelivery, error) {
	id, did := chi.URLParam(r, "id"), chi.URLParam(r, "delivery")
	d, err := s.st.GetWebhookDelivery(r.Context(), did)
	if err == nil && d.EndpointID != id {
		err = mdmd.Errorf(mdmd.ENotFound, "no delivery %s for webhook endpoint %s", did, id)
	}
	return d, err
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
		reg.Audit(r, "webhook.create", "webhook_endpoint", e.ID, mdmd.OutcomeSuccess, "",
			map[string]any{"name": e.Name, "url": e.URL, "event_types": e.EventTypes, "enabled": e.Enabled})
		web.WriteJSON(w, http.StatusCreated, withSecret{e, sec})
		return nil
	})
	reg.Handle("GET", "/webhooks", perm, func(w http.ResponseWriter, r *http.Request) error {
		es, err := s.st.ListWebhookEndpoints(r.Context())
		if err != nil {
			return err
		}
		if es == nil {
			es = []mdmd.WebhookEndpoint{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": es})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		e, err := s.st.GetWebhookEndpoint(r.Context(), chi.URLParam(r, "id"))
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
		e, err := s.st.UpdateWebhookEndpoint(r.Context(), id, mdmd.WebhookEndpointUpdate{Name: in.Name, URL: in.URL,
			EventTypes: in.EventTypes, Enabled: in.Enabled})
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.update", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", in)
		web.WriteJSON(w, http.StatusOK, e)
		return nil
	})
	reg.Handle("DELETE", "/webhooks/{id}", perm, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := s.st.DeleteWebhookEndpoint(r.Context(), id); err != nil {
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
		reg.Audit(r, "webhook.rotate_secret", "webhook_endpoint", id, mdmd.OutcomeSuccess, "",
			map[string]any{"previous_secret_expires_at": e.PreviousSecretUntil})
		web.WriteJSON(w, http.StatusOK, withSecret{e, sec})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}/deliveries", perm, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if _, err := s.st.GetWebhookEndpoint(r.Context(), id); err != nil {
			return err
		}
		q := r.URL.Query()
		limit := 0
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > mdmd.MaxPageSize {
				return mdmd.FieldError("limit", "must be an integer from 1 to %d", mdmd.MaxPageSize)
			}
			limit = n
		}
		ds, next, err := s.st.ListWebhookDeliveries(r.Context(), mdmd.WebhookDeliveryFilter{EndpointID: id,
			State: q.Get("state"), After: q.Get("cursor"), Limit: limit})
		if err != nil {
			return err
		}
		views, err := s.views(r, ds)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, web.Page[DeliveryView]{Items: views, NextCursor: next})
		return nil
	})
	reg.Handle("GET", "/webhooks/{id}/deliveries/{delivery}", perm, func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.delivery(r)
		if err != nil {
			return err
		}
		views, err := s.views(r, []mdmd.WebhookDelivery{*d})
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, views[0])
		return nil
	})
	reg.Handle("POST", "/webhooks/{id}/deliveries/{delivery}/redeliver", perm, func(w http.ResponseWriter, r *http.Request) error {
		if _, err := s.delivery(r); err != nil {
			return err
		}
		d, err := s.Redeliver(r.Context(), chi.URLParam(r, "id"), chi.URLParam(r, "delivery"))
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.redeliver", "webhook_endpoint", d.EndpointID, mdmd.OutcomeSuccess, "",
			map[string]any{"delivery_id": d.ID, "message_id": d.MessageID})
		web.WriteJSON(w, http.StatusAccepted, d)
		return nil
	})
	reg.Handle("POST", "/webhooks/{id}/test", perm, func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.SendTest(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		reg.Audit(r, "webhook.test", "webhook_endpoint", d.EndpointID, mdmd.OutcomeSuccess, "", map[string]any{"delivery_id": d.ID})
		web.WriteJSON(w, http.StatusAccepted, d)
		return nil
	})
}
