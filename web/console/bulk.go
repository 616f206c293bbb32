package console

import "github.com/go-chi/chi/v5"

// BulkActions is what the console needs for these pages (to be filled in).
type BulkActions interface{}

// registerBulk adds these pages' routes when Options.Bulk is set.
func (c *Console) registerBulk(r chi.Router) {
	if c.o.Bulk == nil {
		return
	}
	_ = r
}
