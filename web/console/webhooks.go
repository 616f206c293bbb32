package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/webhooks"
)

// WebhookService is the webhook service (package webhooks) the webhook
// settings pages use; the admin API uses the same methods.
type WebhookService interface {
	Endpoints(ctx context.Context) ([]mdmd.WebhookEndpoint, error)
	Endpoint(ctx context.Context, id string) (*mdmd.WebhookEndpoint, error)
	EndpointStats(ctx context.Context) (map[string]storage.WebhookEndpointStats, error)
	CreateEndpoint(ctx context.Context, e *mdmd.WebhookEndpoint) (string, error)
	UpdateEndpoint(ctx context.Context, id string, u mdmd.WebhookEndpointUpdate) (*mdmd.WebhookEndpoint, error)
	DeleteEndpoint(ctx context.Context, id string) error
	RotateSecret(ctx context.Context, id string, keepPrevious bool) (*mdmd.WebhookEndpoint, string, error)
	SendTest(ctx context.Context, endpointID string) (*mdmd.WebhookDelivery, error)
	Deliveries(ctx context.Context, f mdmd.WebhookDeliveryFilter) ([]webhooks.DeliveryView, string, error)
	Redeliver(ctx context.Context, endpointID, deliveryID string) (*mdmd.WebhookDelivery, error)
}

// registerWebhooks adds these pages' routes when Options.Webhooks is set.
// All need settings:manage, as the API's: the delivery log holds device data.
func (c *Console) registerWebhooks(r chi.Router) {
	if c.o.Webhooks == nil {
		return
	}
	const perm = mdmd.PermSettingsManage
	c.handle(r, "GET", "/settings/webhooks", perm, c.webhooks)
	c.handle(r, "POST", "/settings/webhooks", perm, c.createWebhook)
	c.handle(r, "GET", "/settings/webhooks/{id}", perm, c.webhook)
	c.handle(r, "POST", "/settings/webhooks/{id}/enable", perm, c.setWebhookEnabled(true))
	c.handle(r, "POST", "/settings/webhooks/{id}/disable", perm, c.setWebhookEnabled(false))
	c.handle(r, "POST", "/settings/webhooks/{id}/rotate-secret", perm, c.rotateWebhookSecret)
	c.handle(r, "POST", "/settings/webhooks/{id}/test", perm, c.testWebhook)
	c.handle(r, "POST", "/settings/webhooks/{id}/delete", perm, c.deleteWebhook)
	c.handle(r, "POST", "/settings/webhooks/{id}/deliveries/{delivery}/redeliver", perm, c.redeliverWebhook)
}

// viaConsole marks audit details as coming from the console.
func viaConsole(details map[string]any) map[string]any {
	if details == nil {
		details = map[string]any{}
	}
	details["via"] = "console"
	return details
}

// formWithout is a submitted form to show again, without its CSRF token.
type webhooksContent struct {
	Endpoints  []mdmd.WebhookEndpoint
	Stats      map[string]storage.WebhookEndpointStats
	EventTypes []string
	// Checked are the event types ticked on the form shown again.
	Checked map[string]bool
	// Secret is a new endpoint's signing secret: shown once, on this page only.
	Secret  string
	Created *mdmd.WebhookEndpoint
}

func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request, status int, content *webhooksContent, data *pageData) error {
	es, err := c.o.Webhooks.Endpoints(r.Context())
	if err != nil {
		return err
	}
	stats, err := c.o.Webhooks.EndpointStats(r.Context())
	if err != nil {
		return err
	}
	content.Endpoints, content.Stats, content.EventTypes = es, stats, mdmd.EventTypes
	if content.Checked == nil {
		content.Checked = map[string]bool{}
	}
	data.Title, data.Nav, data.Content = "Webhooks", "settings", content
	c.render(w, r, status, "webhooks", data)
	return nil
}

func (c *Console) webhooks(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if r.URL.Query().Get("done") == "delete" {
		data.Flash = "Webhook endpoint deleted, with its delivery log."
	}
	return c.webhooksPage(w, r, http.StatusOK, &webhooksContent{}, data)
}

// createWebhook stores an endpoint and shows its signing secret once.
func (c *Console) createWebhook(w http.ResponseWriter, r *http.Request) error {
	types := r.PostForm["event_types"]
	e := &mdmd.WebhookEndpoint{Name: strings.TrimSpace(r.PostFormValue("name")), URL: strings.TrimSpace(r.PostFormValue("url")),
		EventTypes: types, Enabled: r.PostFormValue("enabled") != ""}
	sec, err := c.o.Webhooks.CreateEndpoint(r.Context(), e)
	if err != nil {
		checked := map[string]bool{}
		for _, t := range types {
			checked[t] = true
		}
		return refusedForm(r, err, func(status int, data *pageData) error {
			return c.webhooksPage(w, r, status, &webhooksContent{Checked: checked}, data)
		})
	}
	c.audit(r, "webhook.create", "webhook_endpoint", e.ID, mdmd.OutcomeSuccess, "", viaConsole(webhooks.CreateAudit(e)))
	return c.webhooksPage(w, r, http.StatusCreated, &webhooksContent{Secret: sec, Created: e},
		&pageData{Flash: "Webhook endpoint created. Copy its signing secret now: it is not shown again."})
}

type webhookContent struct {
	Endpoint   *mdmd.WebhookEndpoint
	Deliveries []webhooks.DeliveryView
	Next       string
	State      string
	States     []string
	// Secret is a secret just rotated in: shown once, on this page only.
	Secret string
}

var webhookFlashes = map[string]string{
	"enable":    "Endpoint enabled: its held deliveries go out again.",
	"disable":   "Endpoint disabled: its pending deliveries are held until it is enabled.",
	"test":      "Test event queued. It appears below once the delivery worker sends it; reload to see its outcome.",
	"redeliver": "Delivery queued again, due now.",
}

// webhookPage shows an endpoint and a page of its delivery log.
func (c *Console) webhookPage(w http.ResponseWriter, r *http.Request, status int, content *webhookContent, data *pageData) error {
	id := chi.URLParam(r, "id")
	e, err := c.o.Webhooks.Endpoint(r.Context(), id)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	content.Endpoint, content.State, content.States = e, q.Get("state"), mdmd.WebhookDeliveryStates
	content.Deliveries, content.Next, err = c.o.Webhooks.Deliveries(r.Context(),
		mdmd.WebhookDeliveryFilter{EndpointID: id, State: content.State, After: q.Get("cursor"), Limit: 25})
	if err != nil {
		return err
	}
	data.Title, data.Nav, data.Content = "Webhook "+e.Name, "settings", content
	c.render(w, r, status, "webhook", data)
	return nil
}

func (c *Console) webhook(w http.ResponseWriter, r *http.Request) error {
	return c.webhookPage(w, r, http.StatusOK, &webhookContent{}, &pageData{Flash: webhookFlashes[r.URL.Query().Get("done")]})
}

// webhookChange runs a change of the endpoint in the URL; on success it
// audits it and returns to the endpoint's page, else shows the page again
// with the service's error.
func (c *Console) webhookChange(w http.ResponseWriter, r *http.Request, action, done string, run func(id string) (map[string]any, error)) error {
	id := chi.URLParam(r, "id")
	details, err := run(id)
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError || statusOf(err) == http.StatusNotFound {
			return err
		}
		return c.webhookPage(w, r, statusOf(err), &webhookContent{}, &pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err)})
	}
	c.audit(r, action, "webhook_endpoint", id, mdmd.OutcomeSuccess, "", viaConsole(details))
	http.Redirect(w, r, "/settings/webhooks/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
	return nil
}

func (c *Console) setWebhookEnabled(enabled bool) handlerFunc {
	done := map[bool]string{true: "enable", false: "disable"}[enabled]
	return func(w http.ResponseWriter, r *http.Request) error {
		return c.webhookChange(w, r, "webhook.update", done, func(id string) (map[string]any, error) {
			u := mdmd.WebhookEndpointUpdate{Enabled: &enabled}
			_, err := c.o.Webhooks.UpdateEndpoint(r.Context(), id, u)
			return webhooks.UpdateAudit(u), err
		})
	}
}

func (c *Console) testWebhook(w http.ResponseWriter, r *http.Request) error {
	return c.webhookChange(w, r, "webhook.test", "test", func(id string) (map[string]any, error) {
		d, err := c.o.Webhooks.SendTest(r.Context(), id)
		if err != nil {
			return nil, err
		}
		return webhooks.PingAudit(d), nil
	})
}

func (c *Console) redeliverWebhook(w http.ResponseWriter, r *http.Request) error {
	return c.webhookChange(w, r, "webhook.redeliver", "redeliver", func(id string) (map[string]any, error) {
		d, err := c.o.Webhooks.Redeliver(r.Context(), id, chi.URLParam(r, "delivery"))
		if err != nil {
			return nil, err
		}
		return webhooks.RedeliverAudit(d), nil
	})
}

// rotateWebhookSecret gives the endpoint a new secret and shows it once.
// Unless the form asks to forget the old one at once (it leaked), the old
// one keeps signing beside the new one for a day.
func (c *Console) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	e, sec, err := c.o.Webhooks.RotateSecret(r.Context(), id, r.PostFormValue("forget_previous") == "")
	if err != nil {
		return err
	}
	c.audit(r, "webhook.rotate_secret", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", viaConsole(webhooks.RotateAudit(e)))
	flash := "Secret rotated. Copy the new secret now: it is not shown again. "
	if e.PreviousSecretUntil != nil {
		flash += "The previous secret also signs until " + e.PreviousSecretUntil.UTC().Format("2006-01-02 15:04 UTC") + "."
	} else {
		flash += "The previous secret no longer signs."
	}
	return c.webhookPage(w, r, http.StatusOK, &webhookContent{Secret: sec}, &pageData{Flash: flash})
}

func (c *Console) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	e, err := c.o.Webhooks.Endpoint(r.Context(), id)
	if err != nil {
		return err
	}
	if err := c.o.Webhooks.DeleteEndpoint(r.Context(), id); err != nil {
		return err
	}
	c.audit(r, "webhook.delete", "webhook_endpoint", id, mdmd.OutcomeSuccess, "", viaConsole(map[string]any{"name": e.Name}))
	http.Redirect(w, r, "/settings/webhooks?done=delete", http.StatusSeeOther)
	return nil
}
