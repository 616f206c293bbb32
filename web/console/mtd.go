package console

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/storage"
)

// MTDStore lists MTD partners and the verdicts they hold (storage.Store).
type MTDStore interface {
	MTDPartners(ctx context.Context) ([]storage.MTDPartner, error)
	ListDeviceThreats(ctx context.Context, after string, limit int) ([]storage.DeviceThreatRow, string, error)
}

// MTDAdmin is what the threat-defence page uses: the listings, and the
// release that the API's DELETE /devices/{id}/threat performs.
type MTDAdmin interface {
	MTDStore
	Release(ctx context.Context, deviceID string) error
}

// MTD is an MTDAdmin from the store and the partner API (whose Release
// forgets the verdict, marks the device for evaluation and wakes the
// evaluator).
type MTD struct {
	MTDStore
	compliance.MTDAPI
}

// registerMTD adds these pages' routes when Options.MTD is set. Both need
// settings:manage, as the API's release.
func (c *Console) registerMTD(r chi.Router) {
	if c.o.MTD == nil {
		return
	}
	c.handle(r, "GET", "/settings/mtd", mdmd.PermSettingsManage, c.mtd)
	c.handle(r, "POST", "/settings/mtd/devices/{id}/release", mdmd.PermSettingsManage, c.mtdRelease)
}

// mtdVerdict is a device's verdict with whether it is stale.
type mtdVerdict struct {
	storage.DeviceThreatRow
	Stale bool
}

type mtdContent struct {
	Partners []storage.MTDPartner
	Verdicts []mtdVerdict
	Next     string
	// MaxAgeHours is when a verdict without news becomes stale.
	MaxAgeHours int
}

const mtdPageSize = 50

func (c *Console) mtd(w http.ResponseWriter, r *http.Request) error {
	ps, err := c.o.MTD.MTDPartners(r.Context())
	if err != nil {
		return err
	}
	rows, next, err := c.o.MTD.ListDeviceThreats(r.Context(), r.URL.Query().Get("cursor"), mtdPageSize)
	if err != nil {
		return err
	}
	now := c.o.Now()
	content := &mtdContent{Partners: ps, Next: next, MaxAgeHours: int(compliance.DefaultThreatMaxAge / time.Hour)}
	for _, row := range rows {
		content.Verdicts = append(content.Verdicts, mtdVerdict{DeviceThreatRow: row, Stale: compliance.ThreatStale(&row.DeviceThreat, now)})
	}
	data := &pageData{Title: "Threat defence partners", Nav: "settings", Content: content}
	if r.URL.Query().Get("done") == "release" {
		data.Flash = "Device released: its verdict was forgotten and it is evaluated again. Any partner may now report it."
	}
	c.render(w, r, http.StatusOK, "mtd", data)
	return nil
}

// mtdRelease releases a device from the partner that reports it, as the
// API's DELETE /devices/{id}/threat does.
func (c *Console) mtdRelease(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := c.o.MTD.Release(r.Context(), id); err != nil {
		return err
	}
	c.audit(r, "mtd.threat.release", "device", id, mdmd.OutcomeSuccess, "", viaConsole(nil))
	http.Redirect(w, r, "/settings/mtd?done=release&device="+url.QueryEscape(id), http.StatusSeeOther)
	return nil
}
