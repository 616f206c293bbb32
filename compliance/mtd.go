package compliance

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// ThreatStore is what the MTD partner API needs from storage.
type ThreatStore interface {
	ReportThreat(ctx context.Context, t *mdmd.DeviceThreat) (prev string, err error)
	ThreatHeartbeat(ctx context.Context, reporter string, deviceIDs []string) error
	GetThreat(ctx context.Context, deviceID string) (*mdmd.DeviceThreat, error)
	DeleteThreat(ctx context.Context, deviceID string) error
}

// MTDAPI is the API through which mobile-threat-defense partners report
// device threat levels. Partners hold their own tokens (role mtd_partner),
// which can do nothing else; devices are named by their mdmd ID, which
// the partner's app receives through managed app configuration.
type MTDAPI struct {
	Store ThreatStore
	// Wake, if set, is called after a report so that the device is
	// evaluated at once rather than at the next poll.
	Wake func()
}

type threatInput struct {
	Level       string       `json:"level"`
	Source      string       `json:"source"`
	Compromised *bool        `json:"compromised"`
	Details     mdmd.RawJSON `json:"details"`
}

// RegisterAPI adds the partner and admin threat routes.
func (a MTDAPI) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("PUT", "/mtd/devices/{id}/threat", mdmd.PermThreatReport, func(w http.ResponseWriter, r *http.Request) error {
		var in threatInput
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		if _, err := ParseThreatLevel(in.Level); err != nil {
			return err
		}
		t := &mdmd.DeviceThreat{DeviceID: chi.URLParam(r, "id"), Level: in.Level, Source: in.Source,
			Compromised: in.Compromised, Details: in.Details}
		t.ReportedBy = reporter(r)
		prev, err := a.Store.ReportThreat(r.Context(), t)
		if err != nil {
			return err
		}
		if a.Wake != nil {
			a.Wake()
		}
		if prev != t.Level {
			reg.Audit(r, "mtd.threat.report", "device", t.DeviceID, mdmd.OutcomeSuccess, "",
				map[string]any{"from": prev, "to": t.Level, "source": t.Source})
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"threat": t, "previous_level": prev})
		return nil
	})
	reg.Handle("POST", "/mtd/devices/{id}/heartbeat", mdmd.PermThreatReport, func(w http.ResponseWriter, r *http.Request) error {
		if err := a.Store.ThreatHeartbeat(r.Context(), reporter(r), []string{chi.URLParam(r, "id")}); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	// One heartbeat for many devices: all or nothing.
	reg.HandleJSON("POST", "/mtd/heartbeat", mdmd.PermThreatReport, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			DeviceIDs []string `json:"device_ids"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		if err := a.Store.ThreatHeartbeat(r.Context(), reporter(r), in.DeviceIDs); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	// An admin releases a device from the partner that reports it.
	reg.Handle("DELETE", "/devices/{id}/threat", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := a.Release(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "mtd.threat.release", "device", id, mdmd.OutcomeSuccess, "", nil)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	reg.Handle("GET", "/devices/{id}/threat", mdmd.PermDevicesRead, func(w http.ResponseWriter, r *http.Request) error {
		t, err := a.Store.GetThreat(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, t)
		return nil
	})
}

// Release forgets a device's verdict, releasing the device from the
// partner that reports it (the API and the web console): the device is
// marked for evaluation and the evaluator woken.
func (a MTDAPI) Release(ctx context.Context, deviceID string) error {
	if err := a.Store.DeleteThreat(ctx, deviceID); err != nil {
		return err
	}
	if a.Wake != nil {
		a.Wake()
	}
	return nil
}

// DefaultThreatMaxAge is how long a partner's last word (a report or a
// heartbeat) counts when a policy sets no threat_max_age_hours.
const DefaultThreatMaxAge = 24 * time.Hour

// ThreatStale reports whether a verdict is older than the default
// maximum age, as the evaluation of a policy without its own would find.
func ThreatStale(t *mdmd.DeviceThreat, now time.Time) bool {
	return now.Sub(t.HeartbeatAt) > DefaultThreatMaxAge
}

// reporter is the partner's identity: its token's ID, which a partner
// cannot choose (the source in a report is only a label).
func reporter(r *http.Request) string {
	if p := web.PrincipalFrom(r.Context()); p != nil {
		return p.ID
	}
	return ""
}
