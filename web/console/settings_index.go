package console

import "net/http"

// has reports whether an optional part of the console is configured, so
// templates link only to pages that exist.
func (c *Console) has(part string) bool {
	switch part {
	case "approvals":
		return c.o.Approvals != nil
	case "audit":
		return c.o.Audit != nil
	case "admin":
		return c.o.Admin != nil
	case "enrollment":
		return c.o.Enrollment != nil
	case "push":
		return c.o.PushCert != nil
	case "groups":
		return c.o.Groups != nil
	case "policies":
		return c.o.Policies != nil
	case "profiles":
		return c.o.Profiles != nil
	case "android":
		return c.o.AndroidEnterprise != nil
	case "webhooks":
		return c.o.Webhooks != nil
	case "ssf":
		return c.o.SSF != nil
	case "mtd":
		return c.o.MTD != nil
	case "bulk":
		return c.o.Bulk != nil
	}
	return false
}

// settingsIndex lists the settings pages.
func (c *Console) settingsIndex(w http.ResponseWriter, r *http.Request) error {
	c.render(w, r, http.StatusOK, "settings", &pageData{Title: "Settings", Nav: "settings"})
	return nil
}
