package console

import "github.com/go-chi/chi/v5"

// AndroidEnterprise is what the console needs for these pages (to be filled in).
type AndroidEnterprise interface{}

// registerAndroid adds these pages' routes when Options.AndroidEnterprise is set.
func (c *Console) registerAndroid(r chi.Router) {
	if c.o.AndroidEnterprise == nil {
		return
	}
	_ = r
}
