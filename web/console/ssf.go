package console

import "github.com/go-chi/chi/v5"

// SSFAdmin is what the console needs for these pages (to be filled in).
type SSFAdmin interface{}

// registerSSF adds these pages' routes when Options.SSF is set.
func (c *Console) registerSSF(r chi.Router) {
	if c.o.SSF == nil {
		return
	}
	_ = r
}
