package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/commands"
)

const pageSize = 50

type dashboardContent struct {
	D        *mdmd.Dashboard
	Pending  []mdmd.Approval
	Enrolled int64
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request) error {
	d, err := c.o.Store.ConsoleDashboard(r.Context(), 10)
	if err != nil {
		return err
	}
	content := dashboardContent{D: d}
	for _, n := range d.ByCompliance {
		content.Enrolled += n.N
	}
	if c.o.Approvals != nil && stateFrom(r.Context()).principal.Role.Can(mdmd.PermCommandsWipe) {
		if content.Pending, err = c.o.Approvals.List(r.Context(), mdmd.ApprovalPending, 10); err != nil {
			return err
		}
	}
	c.render(w, r, http.StatusOK, "dashboard", &pageData{Title: "Dashboard", Nav: "dashboard", Content: content})
	return nil
}

type devicesContent struct {
	Devices []mdmd.ConsoleDevice
	Total   int64
	Next    string
	Groups  []mdmd.Group
	Q       url.Values
	Paged   bool
	States  []string
}

func (c *Console) devices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := mdmd.ConsoleDeviceFilter{
		DeviceFilter: mdmd.DeviceFilter{Platform: mdmd.Platform(q.Get("platform")), EnrollmentState: mdmd.EnrollmentState(q.Get("state")),
			Ownership: mdmd.Ownership(q.Get("ownership")), OwnerUser: strings.TrimSpace(q.Get("owner")), GroupID: q.Get("group"),
			Query: strings.TrimSpace(q.Get("q")), After: q.Get("cursor"), Limit: pageSize},
		ComplianceState: q.Get("compliance"), Sort: q.Get("sort"),
	}
	groups, err := c.o.Store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	content := devicesContent{Groups: groups, Q: q, Paged: f.After != "", States: mdmd.ComplianceStates}
	data := &pageData{Title: "Devices", Nav: "devices", Content: &content}
	if err := f.Validate(); err != nil {
		data.Error, data.Field = mdmd.ErrorMessage(err), fieldOf(err)
		c.render(w, r, http.StatusBadRequest, "devices", data)
		return nil
	}
	if content.Devices, content.Next, err = c.o.Store.ConsoleListDevices(r.Context(), f); err != nil {
		if mdmd.IsCode(err, mdmd.EInvalid) {
			data.Error, data.Field = mdmd.ErrorMessage(err), fieldOf(err)
			c.render(w, r, http.StatusBadRequest, "devices", data)
			return nil
		}
		return err
	}
	if content.Total, err = c.o.Store.ConsoleCountDevices(r.Context(), f); err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "devices", data)
	return nil
}

func fieldOf(err error) string {
	if e, ok := err.(*mdmd.Error); ok {
		return e.Field
	}
	return ""
}

// ruleResult is one rule of a compliance evaluation (compliance.RuleResult).
type ruleResult struct {
	Rule     string `json:"rule"`
	Outcome  string `json:"outcome"`
	Observed string `json:"observed"`
	Expected string `json:"expected"`
	Reason   string `json:"reason"`
}

type deviceContent struct {
	D          *mdmd.Device
	Groups     []mdmd.Group
	Posture    *mdmd.Posture
	Compliance *mdmd.DeviceCompliance
	Rules      []ruleResult
	Failed     int
	Commands   []mdmd.Command
	Profiles   []mdmd.DeviceProfile
	Timeline   []mdmd.TimelineEntry
	Pending    []mdmd.Approval
	// Action is the form that failed, so its error shows next to it.
	Action string
}

func (c *Console) loadDevice(r *http.Request, id string) (*deviceContent, error) {
	ctx := r.Context()
	d, err := c.o.Store.GetDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &deviceContent{D: d}
	if out.Groups, err = c.o.Store.DeviceGroups(ctx, id); err != nil {
		return nil, err
	}
	if p, err := c.o.Store.GetPosture(ctx, id); err == nil {
		out.Posture = p
	} else if !mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, err
	}
	if dc, err := c.o.Store.GetCompliance(ctx, id); err == nil {
		out.Compliance = dc
		if err := json.Unmarshal(dc.Rules, &out.Rules); err != nil {
			c.log.Warn("device compliance rules are not JSON", "device", id, "err", err)
		}
		// Failed rules first: they are what the reader came for.
		var failed, rest []ruleResult
		for _, rr := range out.Rules {
			if rr.Outcome == "failed" {
				failed = append(failed, rr)
			} else {
				rest = append(rest, rr)
			}
		}
		out.Failed, out.Rules = len(failed), append(failed, rest...)
	} else if !mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, err
	}
	if stateFrom(ctx).principal.Role.Can(mdmd.PermCommandsRead) {
		if out.Commands, _, err = c.o.Store.ListCommands(ctx, mdmd.CommandFilter{DeviceID: id, Limit: 1000}); err != nil {
			return nil, err
		}
		// Newest first.
		for i, j := 0, len(out.Commands)-1; i < j; i, j = i+1, j-1 {
			out.Commands[i], out.Commands[j] = out.Commands[j], out.Commands[i]
		}
		if len(out.Commands) > 25 {
			out.Commands = out.Commands[:25]
		}
	}
	if out.Profiles, err = c.o.Store.DeviceProfiles(ctx, id); err != nil {
		return nil, err
	}
	if out.Timeline, err = c.o.Store.DeviceTimeline(ctx, id, 30); err != nil {
		return nil, err
	}
	if c.o.Approvals != nil && stateFrom(ctx).principal.Role.Can(mdmd.PermCommandsWipe) {
		all, err := c.o.Approvals.List(ctx, mdmd.ApprovalPending, 100)
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			if a.TargetType == "device" && a.TargetID == id {
				out.Pending = append(out.Pending, a)
			}
		}
	}
	return out, nil
}

var flashes = map[string]string{
	"query":          "Posture query sent. The results appear here once the device answers.",
	"lock":           "Lock sent to the device.",
	"clear-passcode": "Clear passcode sent to the device.",
	"wipe-selective": "Selective wipe sent: corporate data will be removed from the device.",
	"wipe-full":      "Full wipe requested. It is sent only once a second administrator approves it.",
}

func (c *Console) device(w http.ResponseWriter, r *http.Request) error {
	content, err := c.loadDevice(r, chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "device", &pageData{Title: content.D.Name, Nav: "devices", Content: content,
		Flash: flashes[r.URL.Query().Get("done")]})
	return nil
}

// action runs a device action from a form. Success redirects back to the
// device (so a reload never repeats the action); a failure shows the
// device again with the error beside the form that failed.
func (c *Console) action(w http.ResponseWriter, r *http.Request, name string, run func(d *mdmd.Device, by string) error) error {
	id := chi.URLParam(r, "id")
	d, err := c.o.Store.GetDevice(r.Context(), id)
	if err != nil {
		return err
	}
	if err := run(d, stateFrom(r.Context()).principal.Name); err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		content, lerr := c.loadDevice(r, id)
		if lerr != nil {
			return lerr
		}
		content.Action = name
		form := r.PostForm
		form.Del("csrf")
		c.render(w, r, statusOf(err), "device", &pageData{Title: d.Name, Nav: "devices", Content: content,
			Error: mdmd.ErrorMessage(err), Field: fieldOf(err), Form: form})
		return nil
	}
	http.Redirect(w, r, "/devices/"+url.PathEscape(id)+"?done="+name, http.StatusSeeOther)
	return nil
}

func (c *Console) actQuery(w http.ResponseWriter, r *http.Request) error {
	return c.action(w, r, "query", func(d *mdmd.Device, by string) error {
		if d.Platform != mdmd.PlatformIOS {
			return mdmd.Errorf(mdmd.EConflict, "Posture queries go to iOS devices; Android devices report through Android Enterprise.")
		}
		_, err := c.o.Commands.EnqueueApple(r.Context(), d.ID, by, true,
			commands.DeviceInformation{}, commands.SecurityInfo{}, commands.ProfileList{})
		if err == nil {
			c.audit(r, "device.query", "device", d.ID, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
		}
		return err
	})
}

var pinRE = regexp.MustCompile(`^[0-9]{6}$`)

func (c *Console) actLock(w http.ResponseWriter, r *http.Request) error {
	return c.action(w, r, "lock", func(d *mdmd.Device, by string) error {
		msg, phone, pin := strings.TrimSpace(r.PostFormValue("message")), strings.TrimSpace(r.PostFormValue("phone")), r.PostFormValue("pin")
		switch {
		case len(msg) > 200:
			return mdmd.FieldError("message", "at most 200 characters")
		case len(phone) > 40:
			return mdmd.FieldError("phone", "at most 40 characters")
		case pin != "" && !pinRE.MatchString(pin):
			return mdmd.FieldError("pin", "the PIN is exactly 6 digits")
		case pin != "" && d.Platform != mdmd.PlatformIOS:
			return mdmd.FieldError("pin", "a lock PIN applies to iOS devices only")
		}
		_, err := c.o.Commands.Lock(r.Context(), d.ID, by, true, commands.DeviceLock{Message: msg, PhoneNumber: phone, PIN: pin})
		if err == nil {
			c.audit(r, "device.lock", "device", d.ID, mdmd.OutcomeSuccess, "", map[string]any{"message": msg, "via": "console"})
		}
		return err
	})
}

func (c *Console) actClearPasscode(w http.ResponseWriter, r *http.Request) error {
	return c.action(w, r, "clear-passcode", func(d *mdmd.Device, by string) error {
		var err error
		if d.Platform == mdmd.PlatformAndroid {
			if c.o.Commands.Android == nil {
				return mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured")
			}
			_, err = c.o.Commands.Android.ResetPassword(r.Context(), d.ID, by, "", nil)
		} else {
			_, err = c.o.Commands.EnqueueApple(r.Context(), d.ID, by, true, commands.ClearPasscode{})
		}
		if err == nil {
			c.audit(r, "device.clear_passcode", "device", d.ID, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
		}
		return err
	})
}

// wipeForm checks what every wipe needs: the device's name (or serial
// number) typed back, and a reason.
func wipeForm(r *http.Request, d *mdmd.Device) (string, error) {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	confirm := strings.TrimSpace(r.PostFormValue("confirm"))
	if confirm == "" || (confirm != d.Name && (d.SerialNumber == "" || confirm != d.SerialNumber)) {
		return "", mdmd.FieldError("confirm", "type the device's name exactly (%q) to confirm the wipe", d.Name)
	}
	if reason == "" || len(reason) > 500 {
		return "", mdmd.FieldError("reason", "a reason is required (at most 500 characters)")
	}
	return reason, nil
}

func (c *Console) actWipeSelective(w http.ResponseWriter, r *http.Request) error {
	return c.action(w, r, "wipe-selective", func(d *mdmd.Device, by string) error {
		reason, err := wipeForm(r, d)
		if err != nil {
			return err
		}
		if _, err := c.o.Commands.SelectiveWipe(r.Context(), d.ID, by, reason, true); err != nil {
			return err
		}
		c.audit(r, "device.wipe", "device", d.ID, mdmd.OutcomeSuccess, reason, map[string]any{"mode": "selective", "via": "console"})
		return nil
	})
}

func (c *Console) actWipeFull(w http.ResponseWriter, r *http.Request) error {
	return c.action(w, r, "wipe-full", func(d *mdmd.Device, by string) error {
		reason, err := wipeForm(r, d)
		if err != nil {
			return err
		}
		pin := r.PostFormValue("pin")
		if pin != "" && (!pinRE.MatchString(pin) || d.Platform != mdmd.PlatformIOS) {
			return mdmd.FieldError("pin", "the Find My PIN is exactly 6 digits, for iOS devices only")
		}
		params := map[string]any{"mode": "full"}
		if pin != "" {
			params["pin"] = pin
		}
		_, err = c.o.Approvals.Request(r.Context(), stateFrom(r.Context()).principal, mdmd.ApprovalDeviceWipeFull, "device", d.ID, reason, params)
		return err
	})
}

type approvalsContent struct {
	Items   []mdmd.Approval
	State   string
	Devices map[string]string // device names by ID
	// Bulk describes bulk wipe requests by approval ID.
	Bulk map[string]string
	Me   string
}

func (c *Console) approvals(w http.ResponseWriter, r *http.Request) error {
	state := r.URL.Query().Get("state")
	if state == "" {
		state = mdmd.ApprovalPending
	} else if state == "all" {
		state = ""
	}
	items, err := c.o.Approvals.List(r.Context(), state, 100)
	if err != nil {
		return err
	}
	content := approvalsContent{Items: items, State: state, Devices: map[string]string{}, Bulk: map[string]string{}, Me: stateFrom(r.Context()).principal.ID}
	for _, a := range items {
		if a.Kind == mdmd.ApprovalBulkWipe {
			var p struct {
				Action  string `json:"action"`
				Devices int    `json:"devices"`
			}
			if json.Unmarshal(a.Params, &p) == nil {
				content.Bulk[a.ID] = fmt.Sprintf("%s of %d devices", labelText(p.Action), p.Devices)
			}
		}
		if a.TargetType == "device" {
			if d, err := c.o.Store.GetDevice(r.Context(), a.TargetID); err == nil {
				content.Devices[a.TargetID] = d.Name
			}
		}
	}
	flash := map[string]string{"approve": "Approved: the action was carried out.", "reject": "Rejected: nothing was sent."}[r.URL.Query().Get("done")]
	c.render(w, r, http.StatusOK, "approvals", &pageData{Title: "Approvals", Nav: "approvals", Content: content, Flash: flash})
	return nil
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, name string, run func(id string) (*mdmd.Approval, error)) error {
	a, err := run(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	if a != nil && a.State == mdmd.ApprovalFailed {
		return mdmd.Errorf(mdmd.EConflict, "The request was approved but carrying it out failed: %s", string(a.Result))
	}
	http.Redirect(w, r, "/approvals?done="+name+"&state="+url.QueryEscape(r.URL.Query().Get("state")), http.StatusSeeOther)
	return nil
}

func (c *Console) approve(w http.ResponseWriter, r *http.Request) error {
	return c.decide(w, r, "approve", func(id string) (*mdmd.Approval, error) {
		return c.o.Approvals.Approve(r.Context(), stateFrom(r.Context()).principal, id)
	})
}

func (c *Console) reject(w http.ResponseWriter, r *http.Request) error {
	return c.decide(w, r, "reject", func(id string) (*mdmd.Approval, error) {
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" || len(reason) > 500 {
			return nil, mdmd.FieldError("reason", "say why you reject the request (at most 500 characters)")
		}
		return c.o.Approvals.Reject(r.Context(), stateFrom(r.Context()).principal, id, reason)
	})
}

var _ = strconv.Itoa
