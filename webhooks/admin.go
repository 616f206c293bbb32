package webhooks

import (
	"context"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// The administration of endpoints, shared by the admin API and the web
// console so that both validate, store and audit a change alike.

// Endpoints lists every endpoint by name.
func (s *Service) Endpoints(ctx context.Context) ([]mdmd.WebhookEndpoint, error) {
	es, err := s.st.ListWebhookEndpoints(ctx)
	if es == nil {
		es = []mdmd.WebhookEndpoint{}
	}
	return es, err
}

// Endpoint returns one endpoint.
func (s *Service) Endpoint(ctx context.Context, id string) (*mdmd.WebhookEndpoint, error) {
	return s.st.GetWebhookEndpoint(ctx, id)
}

// EndpointStats summarises every endpoint's deliveries, by endpoint ID.
func (s *Service) EndpointStats(ctx context.Context) (map[string]storage.WebhookEndpointStats, error) {
	return s.st.WebhookEndpointStats(ctx)
}

// UpdateEndpoint changes the fields u sets; a rejected change changes nothing.
func (s *Service) UpdateEndpoint(ctx context.Context, id string, u mdmd.WebhookEndpointUpdate) (*mdmd.WebhookEndpoint, error) {
	return s.st.UpdateWebhookEndpoint(ctx, id, u)
}

// DeleteEndpoint deletes an endpoint with its deliveries.
func (s *Service) DeleteEndpoint(ctx context.Context, id string) error {
	return s.st.DeleteWebhookEndpoint(ctx, id)
}

// Deliveries lists an endpoint's deliveries, newest first, each with its
// attempt log, and the cursor of the next page.
func (s *Service) Deliveries(ctx context.Context, f mdmd.WebhookDeliveryFilter) ([]DeliveryView, string, error) {
	if _, err := s.st.GetWebhookEndpoint(ctx, f.EndpointID); err != nil {
		return nil, "", err
	}
	ds, next, err := s.st.ListWebhookDeliveries(ctx, f)
	if err != nil {
		return nil, "", err
	}
	views, err := s.views(ctx, ds)
	return views, next, err
}

// Delivery returns one delivery of an endpoint with its attempt log.
func (s *Service) Delivery(ctx context.Context, endpointID, deliveryID string) (*DeliveryView, error) {
	d, err := s.st.GetWebhookDelivery(ctx, deliveryID)
	if err == nil && d.EndpointID != endpointID {
		err = mdmd.Errorf(mdmd.ENotFound, "no delivery %s for webhook endpoint %s", deliveryID, endpointID)
	}
	if err != nil {
		return nil, err
	}
	views, err := s.views(ctx, []mdmd.WebhookDelivery{*d})
	if err != nil {
		return nil, err
	}
	return &views[0], nil
}

// views adds their attempt logs to deliveries.
func (s *Service) views(ctx context.Context, ds []mdmd.WebhookDelivery) ([]DeliveryView, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	as, err := s.st.ListWebhookAttempts(ctx, ids)
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

// The audit details of each change, whichever way it came.

// CreateAudit is what the audit log records of a new endpoint.
func CreateAudit(e *mdmd.WebhookEndpoint) map[string]any {
	return map[string]any{"name": e.Name, "url": e.URL, "event_types": e.EventTypes, "enabled": e.Enabled}
}

// UpdateAudit is what the audit log records of a change: the fields it set.
func UpdateAudit(u mdmd.WebhookEndpointUpdate) map[string]any {
	out := map[string]any{}
	if u.Name != nil {
		out["name"] = *u.Name
	}
	if u.URL != nil {
		out["url"] = *u.URL
	}
	if u.EventTypes != nil {
		out["event_types"] = *u.EventTypes
	}
	if u.Enabled != nil {
		out["enabled"] = *u.Enabled
	}
	return out
}

// RotateAudit is what the audit log records of a secret rotation.
func RotateAudit(e *mdmd.WebhookEndpoint) map[string]any {
	return map[string]any{"previous_secret_expires_at": e.PreviousSecretUntil}
}

// RedeliverAudit is what the audit log records of a redelivery.
func RedeliverAudit(d *mdmd.WebhookDelivery) map[string]any {
	return map[string]any{"delivery_id": d.ID, "message_id": d.MessageID}
}

// PingAudit is what the audit log records of a test ping.
func PingAudit(d *mdmd.WebhookDelivery) map[string]any {
	return map[string]any{"delivery_id": d.ID}
}
