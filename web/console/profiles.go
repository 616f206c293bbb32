package console

import "github.com/go-chi/chi/v5"

// ProfileService is what the console needs for these pages (to be filled in).
type ProfileService interface{}

// registerProfiles adds these pages' routes when Options.Profiles is set.
func (c *Console) registerProfiles(r chi.Router) {
	if c.o.Profiles == nil {
		return
	}
	_ = r
}
