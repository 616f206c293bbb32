package console

import "github.com/go-chi/chi/v5"

// WebhookService is what the console needs for these pages (to be filled in).
type WebhookService interface{}

// registerWebhooks adds these pages' routes when Options.Webhooks is set.
func (c *Console) registerWebhooks(r chi.Router) {
	if c.o.Webhooks == nil {
		return
	}
	_ = r
}
