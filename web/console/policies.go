package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
)

// PolicyService manages compliance policies (compliance.Policies, which
// the admin API uses too: the same validation, and a sweep after every
// change).
type PolicyService interface {
	List(ctx context.Context) ([]mdmd.CompliancePolicy, error)
	Get(ctx context.Context, id string) (*mdmd.CompliancePolicy, error)
	Assignments(ctx context.Context) ([]mdmd.CompliancePolicyGroup, error)
	Create(ctx context.Context, in compliance.PolicyInput) (*mdmd.CompliancePolicy, error)
	Update(ctx context.Context, id string, in compliance.PolicyInput) (*mdmd.CompliancePolicy, error)
	Delete(ctx context.Context, id string) error
	Assign(ctx context.Context, a *mdmd.CompliancePolicyGroup) error
	Unassign(ctx context.Context, policyID, groupID string) error
}

// registerPolicies adds these pages' routes when Options.Policies is set.
func (c *Console) registerPolicies(r chi.Router) {
	if c.o.Policies == nil {
		return
	}
	c.handle(r, "GET", "/policies", mdmd.PermDevicesRead, c.policies)
	c.handle(r, "GET", "/policies/new", mdmd.PermComplianceManage, c.newPolicy)
	c.handle(r, "POST", "/policies", mdmd.PermComplianceManage, c.createPolicy)
	c.handle(r, "GET", "/policies/{id}", mdmd.PermDevicesRead, c.policy)
	c.handle(r, "POST", "/policies/{id}", mdmd.PermComplianceManage, c.updatePolicy)
	c.handle(r, "POST", "/policies/{id}/delete", mdmd.PermComplianceManage, c.deletePolicy)
	c.handle(r, "POST", "/policies/{id}/groups", mdmd.PermComplianceManage, c.assignPolicy)
	c.handle(r, "POST", "/policies/{id}/groups/{group}/remove", mdmd.PermComplianceManage, c.unassignPolicy)
}

// ruleSpec is one field of the policy form: a rule of compliance.Policy
// (or a setting of one), named as in the policy's JSON so that the
// service's errors point at it.
type ruleSpec struct {
	name, label, help string
	// rule: the field switches a rule on (counted on the list).
	rule bool
	str  func(p *compliance.Policy) *string
	num  func(p *compliance.Policy) *int
	flag func(p *compliance.Policy) *bool
	list func(p *compliance.Policy) *[]string
	// choices, for a string picked from a list ("" first).
	choices []string
}

type ruleGroup struct {
	legend string
	specs  []ruleSpec
}

var ruleGroups = []ruleGroup{
	{"Operating system", []ruleSpec{
		{name: "min_os_version", label: "Minimum OS version", help: "Like 17.4 or 14. Empty: no minimum.", rule: true,
			str: func(p *compliance.Policy) *string { return &p.MinOSVersion }},
		{name: "max_os_version", label: "Maximum OS version", help: "Empty: no maximum.", rule: true,
			str: func(p *compliance.Policy) *string { return &p.MaxOSVersion }},
		{name: "max_patch_age_days", label: "Maximum security patch age (days)",
			help: "Android. Empty on a new policy: 90 days unless it is for iOS only; 0 switches the rule off.", rule: true,
			num: func(p *compliance.Policy) *int { return &p.MaxPatchAgeDays }},
		{name: "patch_not_before", label: "Security patch not before", help: "Android: the patch level may not predate this day (YYYY-MM-DD).",
			rule: true, str: func(p *compliance.Policy) *string { return &p.PatchNotBefore }},
	}},
	{"Device security", []ruleSpec{
		{name: "block_compromised", label: "Block jailbroken or rooted devices", rule: true,
			flag: func(p *compliance.Policy) *bool { return &p.BlockCompromised }},
		{name: "require_passcode", label: "Require a passcode", rule: true,
			flag: func(p *compliance.Policy) *bool { return &p.RequirePasscode }},
		{name: "min_passcode_length", label: "Minimum passcode length", help: "Needs a passcode; the device's passcode profile enforces it.",
			rule: true, num: func(p *compliance.Policy) *int { return &p.MinPasscodeLength }},
		{name: "require_encryption", label: "Require encryption", rule: true,
			flag: func(p *compliance.Policy) *bool { return &p.RequireEncryption }},
		{name: "require_secure_posture", label: "Require Android device posture SECURE", rule: true,
			flag: func(p *compliance.Policy) *bool { return &p.RequireSecurePosture }},
	}},
	{"Threat defence", []ruleSpec{
		{name: "max_threat_level", label: "Worst threat level allowed", help: "The verdict of a mobile threat defence partner.", rule: true,
			str:     func(p *compliance.Policy) *string { return (*string)(&p.MaxThreatLevel) },
			choices: []string{"", string(compliance.ThreatSecured), string(compliance.ThreatLow), string(compliance.ThreatMedium), string(compliance.ThreatHigh)}},
		{name: "require_threat_data", label: "Treat missing or stale threat data as noncompliant",
			flag: func(p *compliance.Policy) *bool { return &p.RequireThreatData }},
		{name: "threat_max_age_hours", label: "Threat data is stale after (hours)", help: "Empty: 24 hours.",
			num: func(p *compliance.Policy) *int { return &p.ThreatMaxAgeHours }},
	}},
	{"Profiles and check-in", []ruleSpec{
		{name: "required_profiles", label: "Required profiles", help: "iOS profile identifiers, one a line or separated by commas.", rule: true,
			list: func(p *compliance.Policy) *[]string { return &p.RequiredProfiles }},
		{name: "check_in_validity_days", label: "Noncompliant when silent for (days)", help: "Empty: a silent device stays as it was.", rule: true,
			num: func(p *compliance.Policy) *int { return &p.CheckInValidityDays }},
	}},
	{"When a device fails", []ruleSpec{
		{name: "grace_days", label: "Grace period (days)", help: "A failing device is in grace this long before it is noncompliant; or use the mark action.",
			num: func(p *compliance.Policy) *int { return &p.GraceDays }},
	}},
}

// policyActions are the noncompliance actions, in the order offered.
var policyActions = []struct{ name, label string }{
	{compliance.ActionMark, "Mark noncompliant (ends the grace period)"},
	{compliance.ActionNotify, "Notify (a compliance.action event for webhooks)"},
	{compliance.ActionLock, "Lock the device"},
	{compliance.ActionSelectiveWipe, "Selective wipe (after an administrator approves)"},
}

// policyField is one form field as the template shows it.
type policyField struct {
	Name, Label, Help, Kind, Value, Error string
	Checked                               bool
	Choices                               []string
	// DaysName, DaysValue: an action's "after N days" field.
	DaysName, DaysValue string
}

type policyFieldset struct {
	Legend string
	Fields []policyField
	Error  string
}

// policyFieldsets lays out the form with the values of form and the error,
// if any, next to its field.
func policyFieldsets(form url.Values, errField, errMsg string) []policyFieldset {
	at := func(name string) string {
		if name == errField {
			return errMsg
		}
		return ""
	}
	var out []policyFieldset
	for _, g := range ruleGroups {
		fs := policyFieldset{Legend: g.legend}
		for _, s := range g.specs {
			f := policyField{Name: s.name, Label: s.label, Help: s.help, Value: form.Get(s.name), Error: at(s.name), Choices: s.choices}
			switch {
			case s.flag != nil:
				f.Kind, f.Checked = "check", form.Get(s.name) != ""
			case s.num != nil:
				f.Kind = "number"
			case s.list != nil:
				f.Kind = "list"
			case s.choices != nil:
				f.Kind = "select"
			case s.name == "patch_not_before":
				f.Kind = "date"
			default:
				f.Kind = "text"
			}
			fs.Fields = append(fs.Fields, f)
		}
		out = append(out, fs)
	}
	acts := policyFieldset{Legend: "Actions against a failing device", Error: at("actions")}
	for _, a := range policyActions {
		n := "action_" + a.name
		acts.Fields = append(acts.Fields, policyField{Name: n, Label: a.label, Kind: "action", Checked: form.Get(n) != "",
			DaysName: n + "_days", DaysValue: form.Get(n + "_days")})
	}
	return append(out, acts)
}

// policyValues are a stored policy's form values.
func policyValues(p *mdmd.CompliancePolicy) (url.Values, error) {
	var rules compliance.Policy
	if err := json.Unmarshal(p.Rules, &rules); err != nil {
		return nil, err
	}
	v := url.Values{"name": {p.Name}, "platform": {string(p.Platform)}}
	if p.IsDefault {
		v.Set("is_default", "on")
	}
	for _, g := range ruleGroups {
		for _, s := range g.specs {
			switch {
			case s.str != nil:
				v.Set(s.name, *s.str(&rules))
			case s.flag != nil && *s.flag(&rules):
				v.Set(s.name, "on")
			case s.list != nil:
				v.Set(s.name, strings.Join(*s.list(&rules), "\n"))
			case s.num != nil && (*s.num(&rules) != 0 || s.name == "max_patch_age_days"):
				// A stored patch age of 0 means off: it is shown, so that
				// saving the form keeps it off.
				v.Set(s.name, strconv.Itoa(*s.num(&rules)))
			}
		}
	}
	for _, a := range rules.Actions {
		v.Set("action_"+a.Action, "on")
		v.Set("action_"+a.Action+"_days", strconv.Itoa(a.AfterDays))
	}
	return v, nil
}

// policyInput reads the form into what the service validates; only the
// form's own syntax (whole numbers) is checked here.
func policyInput(form url.Values, platform mdmd.Platform) (compliance.PolicyInput, error) {
	in := compliance.PolicyInput{Name: strings.TrimSpace(form.Get("name")), Platform: platform, IsDefault: form.Get("is_default") != ""}
	whole := func(name, field string) (int, error) {
		v := strings.TrimSpace(form.Get(name))
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, mdmd.FieldError(field, "must be a whole number, got %q", v)
		}
		return n, nil
	}
	var rules compliance.Policy
	for _, g := range ruleGroups {
		for _, s := range g.specs {
			switch {
			case s.str != nil:
				*s.str(&rules) = strings.TrimSpace(form.Get(s.name))
			case s.flag != nil:
				*s.flag(&rules) = form.Get(s.name) != ""
			case s.list != nil:
				*s.list(&rules) = splitList(form.Get(s.name))
			case s.num != nil:
				n, err := whole(s.name, s.name)
				if err != nil {
					return in, err
				}
				*s.num(&rules) = n
			}
		}
	}
	for _, a := range policyActions {
		if form.Get("action_"+a.name) == "" {
			continue
		}
		n, err := whole("action_"+a.name+"_days", "actions")
		if err != nil {
			return in, err
		}
		rules.Actions = append(rules.Actions, compliance.ActionRule{Action: a.name, AfterDays: n})
	}
	var doc any = rules
	if v := strings.TrimSpace(form.Get("max_patch_age_days")); v != "" {
		// Given, even as 0 (off), it overrides the service's default.
		doc = struct {
			compliance.Policy
			MaxPatchAgeDays int `json:"max_patch_age_days"`
		}{rules, rules.MaxPatchAgeDays}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return in, err
	}
	in.Rules = b
	return in, nil
}

// policyRow is one policy on the list.
type policyRow struct {
	mdmd.CompliancePolicy
	Assigned []assignedGroup
	Rules    int
	Actions  []string // "lock after 3 days"
	Broken   bool
}

type assignedGroup struct {
	Group    mdmd.Group
	Priority int
}

type policiesContent struct {
	Policies []policyRow
}

// assignedGroups maps each policy to its groups, by priority.
func (c *Console) assignedGroups(ctx context.Context) (map[string][]assignedGroup, []mdmd.Group, error) {
	as, err := c.o.Policies.Assignments(ctx)
	if err != nil {
		return nil, nil, err
	}
	gs, err := c.o.Store.ListGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]mdmd.Group{}
	for _, g := range gs {
		byID[g.ID] = g
	}
	out := map[string][]assignedGroup{}
	for _, a := range as {
		out[a.PolicyID] = append(out[a.PolicyID], assignedGroup{Group: byID[a.GroupID], Priority: a.Priority})
	}
	return out, gs, nil
}

func (c *Console) policies(w http.ResponseWriter, r *http.Request) error {
	ps, err := c.o.Policies.List(r.Context())
	if err != nil {
		return err
	}
	assigned, _, err := c.assignedGroups(r.Context())
	if err != nil {
		return err
	}
	content := &policiesContent{}
	for _, p := range ps {
		row := policyRow{CompliancePolicy: p, Assigned: assigned[p.ID]}
		var rules compliance.Policy
		if err := json.Unmarshal(p.Rules, &rules); err != nil {
			row.Broken = true
		}
		for _, a := range rules.Actions {
			when := "after " + plural(a.AfterDays, "day")
			if a.AfterDays == 0 {
				when = "at once"
			}
			row.Actions = append(row.Actions, strings.ReplaceAll(a.Action, "_", " ")+" "+when)
		}
		for _, g := range ruleGroups {
			for _, s := range g.specs {
				on := s.rule && ((s.str != nil && *s.str(&rules) != "") || (s.flag != nil && *s.flag(&rules)) ||
					(s.num != nil && *s.num(&rules) != 0) || (s.list != nil && len(*s.list(&rules)) > 0))
				if on {
					row.Rules++
				}
			}
		}
		content.Policies = append(content.Policies, row)
	}
	data := &pageData{Title: "Compliance policies", Nav: "policies", Content: content}
	data.Flash = map[string]string{"delete": "Policy deleted. Devices are being re-evaluated."}[r.URL.Query().Get("done")]
	c.render(w, r, http.StatusOK, "policies", data)
	return nil
}

// policyContent is the policy page: the form (new or edit) and, for a
// stored policy, its groups.
type policyContent struct {
	Policy    *mdmd.CompliancePolicy // nil on the new-policy page
	Fieldsets []policyFieldset
	Assigned  []assignedGroup
	Groups    []mdmd.Group
	// AssignError is an error of the assignment form, FormError one of
	// the policy form that no field shows.
	AssignError, FormError string
}

// policyPage renders the form with form's values; errors of the
// assignment form ("group", "priority") show next to it instead.
func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, status int, p *mdmd.CompliancePolicy, data *pageData) error {
	content := &policyContent{Policy: p}
	form := data.Form
	if p != nil {
		assigned, gs, err := c.assignedGroups(r.Context())
		if err != nil {
			return err
		}
		content.Assigned, content.Groups = assigned[p.ID], gs
		if data.Field == "group" || data.Field == "priority" {
			content.AssignError, form = data.Error, nil
		}
		if form == nil {
			if form, err = policyValues(p); err != nil {
				return err
			}
		}
		data.Title = p.Name
	} else {
		data.Title = "New compliance policy"
	}
	if form == nil {
		form = url.Values{}
	}
	content.Fieldsets = policyFieldsets(form, data.Field, data.Error)
	if data.Error != "" && content.AssignError == "" && data.Field != "name" && data.Field != "platform" {
		content.FormError = data.Error // unless a field below shows it
		for _, fs := range content.Fieldsets {
			for _, f := range fs.Fields {
				if fs.Error != "" || f.Error != "" {
					content.FormError = ""
				}
			}
		}
	}
	data.Nav, data.Form, data.Content = "policies", form, content
	c.render(w, r, status, "policy", data)
	return nil
}

func (c *Console) newPolicy(w http.ResponseWriter, r *http.Request) error {
	return c.policyPage(w, r, http.StatusOK, nil, &pageData{})
}

func (c *Console) policy(w http.ResponseWriter, r *http.Request) error {
	p, err := c.o.Policies.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	data := &pageData{}
	data.Flash = map[string]string{
		"create":   "Policy created. Devices are being evaluated under it; assign it to groups below.",
		"update":   "Policy saved. Devices are being re-evaluated.",
		"assign":   "Policy assigned. Devices are being re-evaluated.",
		"unassign": "Policy removed from the group. Devices are being re-evaluated.",
	}[r.URL.Query().Get("done")]
	return c.policyPage(w, r, http.StatusOK, p, data)
}

// policyChange runs a change; a refused one shows the page again with
// the service's error next to its field.
func (c *Console) policyChange(w http.ResponseWriter, r *http.Request, cur *mdmd.CompliancePolicy, err error) error {
	return refusedForm(r, err, func(status int, data *pageData) error { return c.policyPage(w, r, status, cur, data) })
}

func (c *Console) createPolicy(w http.ResponseWriter, r *http.Request) error {
	in, err := policyInput(r.PostForm, mdmd.Platform(r.PostFormValue("platform")))
	var p *mdmd.CompliancePolicy
	if err == nil {
		p, err = c.o.Policies.Create(r.Context(), in)
	}
	if err != nil {
		return c.policyChange(w, r, nil, err)
	}
	c.audit(r, "compliance.policy.create", "compliance_policy", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": p.Name, "via": "console"})
	http.Redirect(w, r, "/policies/"+p.ID+"?done=create", http.StatusSeeOther)
	return nil
}

func (c *Console) updatePolicy(w http.ResponseWriter, r *http.Request) error {
	cur, err := c.o.Policies.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	in, err := policyInput(r.PostForm, cur.Platform)
	var p *mdmd.CompliancePolicy
	if err == nil {
		p, err = c.o.Policies.Update(r.Context(), cur.ID, in)
	}
	if err != nil {
		return c.policyChange(w, r, cur, err)
	}
	c.audit(r, "compliance.policy.update", "compliance_policy", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"version": p.Version, "via": "console"})
	http.Redirect(w, r, "/policies/"+p.ID+"?done=update", http.StatusSeeOther)
	return nil
}

func (c *Console) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := c.o.Policies.Delete(r.Context(), id); err != nil {
		return err
	}
	c.audit(r, "compliance.policy.delete", "compliance_policy", id, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/policies?done=delete", http.StatusSeeOther)
	return nil
}

func (c *Console) assignPolicy(w http.ResponseWriter, r *http.Request) error {
	cur, err := c.o.Policies.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	as := &mdmd.CompliancePolicyGroup{PolicyID: cur.ID, GroupID: r.PostFormValue("group")}
	if as.GroupID == "" {
		err = mdmd.FieldError("group", "choose a group")
	} else if as.Priority, err = strconv.Atoi(strings.TrimSpace(r.PostFormValue("priority"))); err != nil {
		err = mdmd.FieldError("priority", "must be a whole number from 0 to 1000000: the lowest number wins")
	} else {
		err = c.o.Policies.Assign(r.Context(), as)
	}
	if err != nil {
		if mdmd.IsCode(err, mdmd.ENotFound) {
			// The group (the policy was found above) is gone.
			err = mdmd.FieldError("group", "the group no longer exists: reload the page")
		}
		return c.policyChange(w, r, cur, err)
	}
	c.audit(r, "compliance.policy.assign", "compliance_policy", as.PolicyID, mdmd.OutcomeSuccess, "",
		map[string]any{"group_id": as.GroupID, "priority": as.Priority, "via": "console"})
	http.Redirect(w, r, "/policies/"+cur.ID+"?done=assign", http.StatusSeeOther)
	return nil
}

func (c *Console) unassignPolicy(w http.ResponseWriter, r *http.Request) error {
	id, group := chi.URLParam(r, "id"), chi.URLParam(r, "group")
	if err := c.o.Policies.Unassign(r.Context(), id, group); err != nil {
		return err
	}
	c.audit(r, "compliance.policy.unassign", "compliance_policy", id, mdmd.OutcomeSuccess, "", map[string]any{"group_id": group, "via": "console"})
	http.Redirect(w, r, "/policies/"+id+"?done=unassign", http.StatusSeeOther)
	return nil
}
