package android

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// Lock locks the device now.
func (c *Commands) Lock(ctx context.Context, deviceID, by string) (*mdmd.Command, error) {
	return c.Enqueue(ctx, deviceID, by, Command{Type: CmdLock})
}

// ResetPassword sets a new password; an empty one removes it (clear passcode).
func (c *Commands) ResetPassword(ctx context.Context, deviceID, by, newPassword string, flags []string) (*mdmd.Command, error) {
	return c.Enqueue(ctx, deviceID, by, Command{Type: CmdResetPassword, NewPassword: newPassword, ResetPasswordFlags: flags})
}

// Wipe deletes the device from the enterprise:
//   - selective, on a personally owned device with a work profile: only the
//     work profile and its data go; the reason is shown to the user;
//   - full, on a company-owned device: a factory reset, keeping factory
//     reset protection unless preserveFRP is false.
func (c *Commands) Wipe(ctx context.Context, deviceID, by string, full bool, reason string, preserveFRP bool) (*mdmd.Command, error) {
	ad, err := c.st.GetAndroidDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	company := ad.AMAPIOwnership == "COMPANY_OWNED"
	switch {
	case full && !company:
		return nil, mdmd.Errorf(mdmd.EConflict, "a personally owned device can only be wiped selectively (its work profile)")
	case !full && company:
		// Deleting a company-owned device factory-resets it, work profile
		// or not; giving it up without a reset is relinquish.
		return nil, mdmd.Errorf(mdmd.EConflict, "a company-owned device cannot be wiped selectively: wipe it fully, or relinquish ownership to remove only the work profile")
	}
	cmd := Command{Type: CmdDelete, WipeReason: reason}
	if full && preserveFRP {
		cmd.WipeDataFlags = []string{"PRESERVE_RESET_PROTECTION_DATA"}
	}
	return c.Enqueue(ctx, deviceID, by, cmd)
}

// RegisterAPI adds the Android-only device actions.
func (c *Commands) RegisterAPI(reg web.Registrar) {
	by := func(r *http.Request) string { return web.PrincipalFrom(r.Context()).Name }
	respond := func(w http.ResponseWriter, cmd *mdmd.Command) {
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"commands": []*mdmd.Command{cmd}})
	}
	reg.HandleJSON("POST", "/devices/{id}/actions/reset-password", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			NewPassword string   `json:"new_password"`
			Flags       []string `json:"flags"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		cmd, err := c.ResetPassword(r.Context(), id, by(r), in.NewPassword, in.Flags)
		if err != nil {
			return err
		}
		reg.Audit(r, "device.reset_password", "device", id, mdmd.OutcomeSuccess, "", map[string]any{"flags": in.Flags})
		respond(w, cmd)
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/reboot", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct{}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		id := chi.URLParam(r, "id")
		cmd, err := c.Enqueue(r.Context(), id, by(r), Command{Type: CmdReboot})
		if err != nil {
			return err
		}
		reg.Audit(r, "device.reboot", "device", id, mdmd.OutcomeSuccess, "", nil)
		respond(w, cmd)
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/lost-mode", mdmd.PermCommandsLock, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Enable       bool   `json:"enable"`
			Message      string `json:"message"`
			PhoneNumber  string `json:"phone_number"`
			Email        string `json:"email"`
			Organization string `json:"organization"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		cmd := Command{Type: CmdStopLostMode}
		if in.Enable {
			cmd = Command{Type: CmdStartLostMode, LostMode: &am.StartLostModeParams{
				LostMessage:      &am.UserFacingMessage{DefaultMessage: in.Message},
				LostPhoneNumber:  &am.UserFacingMessage{DefaultMessage: in.PhoneNumber},
				LostEmailAddress: in.Email, LostOrganization: &am.UserFacingMessage{DefaultMessage: in.Organization}}}
		}
		id := chi.URLParam(r, "id")
		out, err := c.Enqueue(r.Context(), id, by(r), cmd)
		if err != nil {
			return err
		}
		reg.Audit(r, "device.lost_mode", "device", id, mdmd.OutcomeSuccess, "", map[string]any{"enable": in.Enable})
		respond(w, out)
		return nil
	})
	reg.HandleJSON("POST", "/devices/{id}/actions/relinquish", mdmd.PermCommandsWipe, func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Reason string `json:"reason"`
		}
		if err := web.DecodeJSON(r, &in); err != nil {
			return err
		}
		if in.Reason == "" {
			return mdmd.FieldError("reason", "required")
		}
		id := chi.URLParam(r, "id")
		cmd, err := c.Enqueue(r.Context(), id, by(r), Command{Type: CmdRelinquish})
		if err != nil {
			return err
		}
		reg.Audit(r, "device.relinquish", "device", id, mdmd.OutcomeSuccess, in.Reason, nil)
		respond(w, cmd)
		return nil
	})
}
