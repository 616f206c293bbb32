package console

import "github.com/go-chi/chi/v5"

// PolicyService is what the console needs for these pages (to be filled in).
type PolicyService interface{}

// registerPolicies adds these pages' routes when Options.Policies is set.
func (c *Console) registerPolicies(r chi.Router) {
	if c.o.Policies == nil {
		return
	}
	_ = r
}
