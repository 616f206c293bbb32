package console

import "github.com/go-chi/chi/v5"

// MTDAdmin is what the console needs for these pages (to be filled in).
type MTDAdmin interface{}

// registerMTD adds these pages' routes when Options.MTD is set.
func (c *Console) registerMTD(r chi.Router) {
	if c.o.MTD == nil {
		return
	}
	_ = r
}
