package enroll

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/profiles"
	"github.com/mdmd/mdmd/web"
)

// RenewStore is what identity renewal needs from storage.
type RenewStore interface {
	CreateRenewalChallenge(ctx context.Context, deviceID, hash string, expires time.Time) error
	ExpiringAppleIdentities(ctx context.Context, before time.Time, limit int) ([]string, error)
}

// Commander queues device commands.
type Commander interface {
	EnqueueApple(ctx context.Context, deviceID, by string, push bool, cmds ...commands.AppleCommand) ([]*mdmd.Command, error)
}

// RenewJob is the job kind that renews identities about to expire.
const RenewJob = "apple.renew_identities"

// RenewBefore is how long before expiry an identity is renewed.
const RenewBefore = 30 * 24 * time.Hour

// renewalTTL is how long a renewal challenge waits for an offline device.
const renewalTTL = 14 * 24 * time.Hour

// RenewIdentity renews an enrolled device's identity the way iOS expects:
// an InstallProfile of the enrollment profile (same identifier, so it
// replaces the installed one) whose SCEP challenge is bound to this
// device. The device gets a new certificate and uses it from then on; it
// takes over the enrollment because it was issued as a renewal of the
// current one.
func (s *Service) RenewIdentity(ctx context.Context, rs RenewStore, cmds Commander, deviceID, by string) (*mdmd.Command, error) {
	topic, err := s.topics.Topic(ctx)
	if err != nil {
		return nil, err
	}
	challenge := randomSecret()
	if err := rs.CreateRenewalChallenge(ctx, deviceID, hashSecret(challenge), s.now().Add(renewalTTL)); err != nil {
		return nil, err
	}
	xml, err := profiles.BuildEnrollment(profiles.Enrollment{
		Organization: s.cfg.Organization, SCEPURL: s.cfg.PublicURL + PathSCEP,
		ServerURL: s.cfg.PublicURL + PathMDMConnect, CheckInURL: s.cfg.PublicURL + PathMDMCheckin,
		Challenge: challenge, Topic: topic, Subject: "mdmd device " + deviceID,
	})
	if err != nil {
		return nil, err
	}
	signed, err := apple.Sign(xml, s.ids.ProfileSigner.Cert, s.ids.ProfileSigner.Key, s.ids.CA.Cert)
	if err != nil {
		return nil, err
	}
	out, err := cmds.EnqueueApple(ctx, deviceID, by, true, commands.InstallProfile{Payload: signed})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// RenewExpiring renews every identity that expires within RenewBefore and
// has no renewal on its way.
func (s *Service) RenewExpiring(ctx context.Context, rs RenewStore, cmds Commander) (int, error) {
	ids, err := rs.ExpiringAppleIdentities(ctx, s.now().Add(RenewBefore), mdmd.MaxPageSize)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if _, err := s.RenewIdentity(ctx, rs, cmds, id, "system"); err != nil {
			s.log.Warn("identity renewal failed", "device", id, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		s.log.Info("identity renewals queued", "devices", n)
	}
	return n, nil
}

// RenewalAPI adds the admin route that renews a device's identity now.
type RenewalAPI struct {
	Service *Service
	Store   RenewStore
	Cmds    Commander
}

// RegisterAPI adds POST /devices/{id}/actions/renew-identity.
func (a RenewalAPI) RegisterAPI(reg web.Registrar) {
	reg.HandleJSON("POST", "/devices/{id}/actions/renew-identity", mdmd.PermEnrollManage, func(w http.ResponseWriter, r *http.Request) error {
		var in struct{}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		cmd, err := a.Service.RenewIdentity(r.Context(), a.Store, a.Cmds, id, web.PrincipalFrom(r.Context()).Name)
		if err != nil {
			return err
		}
		reg.Audit(r, "device.renew_identity", "device", id, mdmd.OutcomeSuccess, "", map[string]string{"command": cmd.ID})
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"commands": []*mdmd.Command{cmd}})
		return nil
	})
}
