package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/profiles"
)

// ProfileService is the configuration profile service (package profiles):
// the same calls the admin API makes, so both validate alike and queue
// the same installs and removals.
type ProfileService interface {
	Summaries(ctx context.Context) ([]profiles.Summary, error)
	Get(ctx context.Context, id string) (*mdmd.Profile, []mdmd.ProfileAssignment, error)
	Installs(ctx context.Context, profileID string, limit int) ([]profiles.Install, error)
	Mobileconfig(ctx context.Context, id string) ([]byte, *mdmd.Profile, error)
	Create(ctx context.Context, in profiles.Input, by string) (*mdmd.Profile, error)
	Update(ctx context.Context, id string, in profiles.Input) (*mdmd.Profile, error)
	Delete(ctx context.Context, id string) error
	Assign(ctx context.Context, a *mdmd.ProfileAssignment) error
	Unassign(ctx context.Context, a *mdmd.ProfileAssignment) error
}

// registerProfiles adds these pages' routes when Options.Profiles is set.
func (c *Console) registerProfiles(r chi.Router) {
	if c.o.Profiles == nil {
		return
	}
	c.handle(r, "GET", "/profiles", mdmd.PermDevicesRead, c.profilesList)
	c.handle(r, "POST", "/profiles", mdmd.PermProfilesManage, c.createProfile)
	c.handle(r, "GET", "/profiles/{id}", mdmd.PermDevicesRead, c.profileDetail)
	c.handle(r, "POST", "/profiles/{id}", mdmd.PermProfilesManage, c.updateProfile)
	// The payload may hold secrets: the API's permission for it.
	c.handle(r, "GET", "/profiles/{id}/mobileconfig", mdmd.PermProfilesManage, c.profileMobileconfig)
	c.handle(r, "POST", "/profiles/{id}/delete", mdmd.PermProfilesManage, c.deleteProfile)
	c.handle(r, "POST", "/profiles/{id}/assignments", mdmd.PermProfilesManage, c.assignProfile)
	c.handle(r, "POST", "/profiles/{id}/assignments/delete", mdmd.PermProfilesManage, c.unassignProfile)
}

// A profile form's fields, each named as its key in the profile's
// settings (so a settings error lands next to its field). Form values are
// only translated to settings here; profiles.Build validates them.
type profileField struct {
	// Name is the form field's; Setting the settings key, when another.
	Name, Setting, Label, Help string
	// Type is number, text, password, check (a boolean), tri (unset, yes
	// or no), yesno, select (one of Options), lines (a list, one a line)
	// or file.
	Type     string
	Options  []string
	Required bool
}

type profileKind struct {
	Kind   mdmd.ProfileKind
	Title  string
	About  string
	Fields []profileField
}

// Key is the field's key in the settings (and in their errors).
func (f profileField) Key() string {
	if f.Setting != "" {
		return f.Setting
	}
	return f.Name
}

// Upload reports whether the kind's form sends a file.
func (k *profileKind) Upload() bool { return k.Kind == mdmd.ProfileCustom }

var profileKinds = []*profileKind{
	{Kind: mdmd.ProfilePasscode, Title: "Passcode policy", About: "Requires a passcode. Empty fields take mdmd's zero-trust defaults.",
		Fields: []profileField{
			{Name: "min_length", Label: "Minimum length", Help: "4 to 16; default 6", Type: "number"},
			{Name: "require_alphanumeric", Label: "Require letters and digits", Type: "check"},
			{Name: "max_inactivity_minutes", Label: "Auto-lock after (minutes)", Help: "1 to 15; default 5", Type: "number"},
			{Name: "max_failed_attempts", Label: "Failed attempts before the device erases", Help: "2 to 11; default 10", Type: "number"},
			{Name: "max_pin_age_days", Label: "Passcode expires after (days)", Help: "0 to 730; 0 never", Type: "number"},
		}},
	{Kind: mdmd.ProfileRestrictions, Title: "Restrictions", About: "Set at least one; the others keep the device's default.",
		Fields: []profileField{
			{Name: "allow_camera", Label: "Allow the camera", Type: "tri"},
			{Name: "allow_screen_capture", Label: "Allow screenshots and screen recording", Type: "tri"},
			{Name: "allow_cloud_backup", Label: "Allow iCloud backup", Type: "tri"},
			{Name: "force_encrypted_backup", Label: "Force encrypted backups", Type: "tri"},
			{Name: "allow_untrusted_tls_prompt", Label: "Let users trust unknown TLS certificates", Type: "tri"},
			{Name: "allow_open_managed_to_unmanaged", Label: "Allow opening managed documents in unmanaged apps", Type: "tri"},
		}},
	{Kind: mdmd.ProfileWiFi, Title: "Wi-Fi network", About: "The password is sealed at rest and never shown again.",
		Fields: []profileField{
			{Name: "ssid", Label: "Network name (SSID)", Type: "text", Required: true},
			{Name: "security", Label: "Security", Type: "select", Options: []string{"WPA2", "WPA3", "WPA", "Any", "None"}},
			{Name: "password", Label: "Password", Help: "8 to 63 characters; none for an open network", Type: "password"},
			{Name: "auto_join", Label: "Join automatically", Type: "yesno"},
			{Name: "hidden", Label: "Hidden network", Type: "check"},
		}},
	{Kind: mdmd.ProfileVPN, Title: "Per-app VPN (IKEv2)", About: "Managed apps mapped to it, and the Safari domains listed, use the tunnel. The shared secret is never shown again.",
		Fields: []profileField{
			{Name: "vpn_name", Setting: "name", Label: "VPN name", Type: "text", Required: true},
			{Name: "server", Label: "Server (host name)", Type: "text", Required: true},
			{Name: "remote_identifier", Label: "Remote identifier", Type: "text", Required: true},
			{Name: "local_identifier", Label: "Local identifier", Type: "text", Required: true},
			{Name: "shared_secret", Label: "Shared secret", Help: "8 characters or more", Type: "password", Required: true},
			{Name: "safari_domains", Label: "Safari domains", Help: "one a line", Type: "lines"},
		}},
	{Kind: mdmd.ProfileCustom, Title: "Upload a .mobileconfig", About: "A configuration profile made elsewhere (Apple Configurator, iMazing), signed or not; mdmd signs it when installing.",
		Fields: []profileField{
			{Name: "mobileconfig", Label: ".mobileconfig file", Type: "file", Required: true},
		}},
}

func kindOf(k mdmd.ProfileKind) *profileKind {
	for _, pk := range profileKinds {
		if pk.Kind == k {
			return pk
		}
	}
	return nil
}

// settingsFromForm turns a form into a profile's settings (nil for an
// uploaded profile). Only a number that is not one is refused here.
func (k *profileKind) settingsFromForm(form url.Values) (json.RawMessage, error) {
	if k.Upload() {
		return nil, nil
	}
	m := map[string]any{}
	for _, f := range k.Fields {
		v := strings.TrimSpace(form.Get(f.Name))
		switch f.Type {
		case "number":
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, mdmd.FieldError(f.Key(), "%s must be a whole number", strings.ToLower(f.Label))
			}
			m[f.Key()] = n
		case "check":
			m[f.Key()] = v != ""
		case "tri", "yesno":
			if v != "" {
				m[f.Key()] = v == "true"
			}
		case "lines":
			var list []string
			for _, l := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
				if l = strings.TrimSpace(l); l != "" {
					list = append(list, l)
				}
			}
			if list != nil {
				m[f.Key()] = list
			}
		case "password":
			m[f.Key()] = form.Get(f.Name) // as typed
		default:
			m[f.Key()] = v
		}
	}
	return json.Marshal(m)
}

// formFromSettings fills a form from stored settings (secrets, which are
// not kept readable, stay empty).
func (k *profileKind) formFromSettings(raw json.RawMessage) url.Values {
	form := url.Values{}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return form
	}
	for _, f := range k.Fields {
		v, ok := m[f.Key()]
		if !ok || v == nil {
			continue
		}
		switch x := v.(type) {
		case bool:
			if f.Type == "check" && x {
				form.Set(f.Name, "on")
			} else if f.Type != "check" {
				form.Set(f.Name, strconv.FormatBool(x))
			}
		case float64:
			form.Set(f.Name, strconv.FormatFloat(x, 'f', -1, 64))
		case []any:
			var lines []string
			for _, l := range x {
				if s, ok := l.(string); ok {
					lines = append(lines, s)
				}
			}
			form.Set(f.Name, strings.Join(lines, "\n"))
		case string:
			if f.Type != "password" {
				form.Set(f.Name, x)
			}
		}
	}
	return form
}

// profileForm is one create or edit form, as the template draws it.
type profileForm struct {
	Kind   *profileKind
	Action string
	ID     string // prefix of the inputs' IDs
	Values url.Values
	Edit   bool
	// Error and Field are set when this form was refused.
	Error, Field string
	CSRF         string
}

// FieldError is the form's error if it is about the field with this key
// ("name" is the profile's name).
func (f *profileForm) FieldError(key string) string {
	if f.Error != "" && (f.Field == key || key == "mobileconfig" && f.Field == "mobileconfig_base64") {
		return f.Error
	}
	return ""
}

// FormError is the form's error if it is about none of its fields.
func (f *profileForm) FormError() string {
	if f.FieldError("name") != "" {
		return ""
	}
	for _, fl := range f.Kind.Fields {
		if f.FieldError(fl.Key()) != "" {
			return ""
		}
	}
	return f.Error
}

type profileTarget struct {
	Type, ID, Name string
}

type profileRow struct {
	profiles.Summary
	Targets []profileTarget
}

// KindTitle names the profile's kind.
func (r profileRow) KindTitle() string {
	if k := kindOf(r.Kind); k != nil {
		return k.Title
	}
	return string(r.Kind)
}

type stateCount struct {
	State, Class string
	N            int64
}

// Counts are the profile's devices by install state.
func (r profileRow) Counts() []stateCount {
	var out []stateCount
	for _, st := range []string{mdmd.ProfileInstalled, mdmd.ProfileInstalling, mdmd.ProfileFailed, mdmd.ProfileRemoving} {
		if n := r.Installs[st]; n > 0 {
			out = append(out, stateCount{State: st, Class: stateClass(st), N: n})
		}
	}
	return out
}

// stateClass is the badge class of an install state.
func stateClass(state string) string {
	switch state {
	case mdmd.ProfileInstalled:
		return "success"
	case mdmd.ProfileFailed:
		return "failed"
	}
	return "cmd-queued"
}

type installRow struct {
	profiles.Install
	Class string
}

type profilesContent struct {
	Profiles []profileRow
	Forms    []*profileForm
	// Open is the kind whose create form was refused.
	Open mdmd.ProfileKind
}

type profileContent struct {
	Profile  *mdmd.Profile
	Kind     *profileKind
	Targets  []profileTarget
	Groups   []mdmd.Group // groups it is not assigned to yet
	Installs []installRow
	More     bool // there are more installs than shown
	Settings []profileSetting
	Form     *profileForm
	Section  string // the form an error belongs to: edit or assign
}

type profileSetting struct{ Label, Value string }

// profilesView is the content of the profiles template: the list or one
// profile (one template, so both draw the same forms).
type profilesView struct {
	List   *profilesContent
	Detail *profileContent
}

const profileInstallsShown = 100

// targets names a profile's assignments; groups maps group IDs to names.
func targets(as []mdmd.ProfileAssignment, groups map[string]string) []profileTarget {
	out := make([]profileTarget, 0, len(as))
	for _, a := range as {
		t := profileTarget{Type: a.TargetType, ID: a.TargetID, Name: a.TargetID}
		if a.TargetType == mdmd.TargetGroup && groups[a.TargetID] != "" {
			t.Name = groups[a.TargetID]
		}
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Type > out[j].Type }) // groups first
	return out
}

func (c *Console) groupNames(ctx context.Context) ([]mdmd.Group, map[string]string, error) {
	gs, err := c.o.Store.ListGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	names := map[string]string{}
	for _, g := range gs {
		names[g.ID] = g.Name
	}
	return gs, names, nil
}

func (c *Console) profilesPage(w http.ResponseWriter, r *http.Request, status int, refused *profileForm, data *pageData) error {
	sums, err := c.o.Profiles.Summaries(r.Context())
	if err != nil {
		return err
	}
	_, names, err := c.groupNames(r.Context())
	if err != nil {
		return err
	}
	content := &profilesContent{}
	for _, s := range sums {
		content.Profiles = append(content.Profiles, profileRow{Summary: s, Targets: targets(s.Assignments, names)})
	}
	csrf := stateFrom(r.Context()).sess.CSRFToken
	for _, k := range profileKinds {
		f := &profileForm{Kind: k, Action: "/profiles", ID: "new-" + string(k.Kind), Values: url.Values{}, CSRF: csrf}
		if refused != nil && refused.Kind == k {
			f, content.Open = refused, k.Kind
			f.Action, f.ID, f.CSRF = "/profiles", "new-"+string(k.Kind), csrf
		}
		content.Forms = append(content.Forms, f)
	}
	data.Title, data.Nav, data.Content = "Profiles", "profiles", &profilesView{List: content}
	c.render(w, r, status, "profiles", data)
	return nil
}

func (c *Console) profilesList(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if r.URL.Query().Get("done") == "delete" {
		data.Flash = "Profile deleted. Devices that had it are asked to remove it."
	}
	return c.profilesPage(w, r, http.StatusOK, nil, data)
}

// profileInput reads a create or edit form for a kind.
func profileInput(r *http.Request, k *profileKind) (profiles.Input, error) {
	in := profiles.Input{Name: strings.TrimSpace(r.PostFormValue("name")), Kind: k.Kind}
	var err error
	if in.Settings, err = k.settingsFromForm(r.PostForm); err != nil {
		return in, err
	}
	if k.Upload() {
		file, _, ferr := r.FormFile("mobileconfig")
		if ferr == nil {
			defer file.Close()
			// One byte over the limit, so that ParseUpload refuses it.
			if in.Mobileconfig, err = io.ReadAll(io.LimitReader(file, profiles.MaxUpload+1)); err != nil {
				return in, err
			}
		}
	}
	return in, nil
}

// refusedProfileForm is a form to draw again with the service's error.
func refusedProfileForm(r *http.Request, k *profileKind, err error) *profileForm {
	form := url.Values{}
	for key, v := range r.PostForm {
		form[key] = v
	}
	form.Del("csrf")
	for _, f := range k.Fields {
		if f.Type == "password" {
			form.Del(f.Name) // never echoed
		}
	}
	return &profileForm{Kind: k, Values: form, Error: mdmd.ErrorMessage(err), Field: fieldOf(err)}
}

func (c *Console) createProfile(w http.ResponseWriter, r *http.Request) error {
	k := kindOf(mdmd.ProfileKind(r.PostFormValue("kind")))
	if k == nil {
		return mdmd.FieldError("kind", "choose one of the profile kinds offered")
	}
	in, err := profileInput(r, k)
	var p *mdmd.Profile
	if err == nil {
		p, err = c.o.Profiles.Create(r.Context(), in, stateFrom(r.Context()).principal.Name)
	}
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		return c.profilesPage(w, r, statusOf(err), refusedProfileForm(r, k, err), &pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err)})
	}
	c.audit(r, "profile.create", "profile", p.ID, mdmd.OutcomeSuccess, "",
		map[string]any{"name": p.Name, "kind": p.Kind, "identifier": p.Identifier, "via": "console"})
	http.Redirect(w, r, "/profiles/"+p.ID+"?done=create", http.StatusSeeOther)
	return nil
}

func (c *Console) profilePage(w http.ResponseWriter, r *http.Request, status int, id string, content *profileContent, data *pageData) error {
	ctx := r.Context()
	p, as, err := c.o.Profiles.Get(ctx, id)
	if err != nil {
		return err
	}
	gs, names, err := c.groupNames(ctx)
	if err != nil {
		return err
	}
	content.Profile, content.Kind, content.Targets = p, kindOf(p.Kind), targets(as, names)
	assigned := map[string]bool{}
	for _, a := range as {
		assigned[a.TargetType+"/"+a.TargetID] = true
	}
	for _, g := range gs {
		if !assigned[mdmd.TargetGroup+"/"+g.ID] {
			content.Groups = append(content.Groups, g)
		}
	}
	installs, err := c.o.Profiles.Installs(ctx, p.ID, profileInstallsShown+1)
	if err != nil {
		return err
	}
	if len(installs) > profileInstallsShown {
		installs, content.More = installs[:profileInstallsShown], true
	}
	for _, in := range installs {
		content.Installs = append(content.Installs, installRow{Install: in, Class: stateClass(in.State)})
	}
	if content.Kind == nil {
		return mdmd.Errorf(mdmd.EInternal, "profile %s has unknown kind %q", p.ID, p.Kind)
	}
	shown := content.Kind.formFromSettings(p.Settings)
	for _, f := range content.Kind.Fields {
		if v := shown.Get(f.Name); v != "" {
			content.Settings = append(content.Settings, profileSetting{Label: f.Label, Value: settingText(f, v)})
		}
	}
	if content.Form == nil {
		shown.Set("name", p.Name)
		content.Form = &profileForm{Kind: content.Kind, Values: shown}
	}
	content.Form.Action, content.Form.ID, content.Form.Edit = "/profiles/"+p.ID, "edit", true
	content.Form.CSRF = stateFrom(ctx).sess.CSRFToken
	data.Title, data.Nav, data.Content = p.Name, "profiles", &profilesView{Detail: content}
	c.render(w, r, status, "profiles", data)
	return nil
}

// settingText is a setting as the profile page shows it.
func settingText(f profileField, v string) string {
	switch {
	case f.Type == "check" || f.Type == "tri" || f.Type == "yesno":
		if v == "false" {
			return "no"
		}
		return "yes"
	case f.Type == "lines":
		return strings.ReplaceAll(v, "\n", ", ")
	}
	return v
}

func (c *Console) profileDetail(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	switch r.URL.Query().Get("done") {
	case "create":
		data.Flash = "Profile created. Assign it to a group to install it on the group's iPhones and iPads."
	case "update":
		data.Flash = "Profile saved as a new version: devices that have it get the new version."
	case "assign":
		data.Flash = "Assigned: the group's enrolled iPhones and iPads are asked to install it."
	case "unassign":
		data.Flash = "Unassigned: devices that had it only through this assignment are asked to remove it."
	}
	return c.profilePage(w, r, http.StatusOK, chi.URLParam(r, "id"), &profileContent{}, data)
}

func (c *Console) updateProfile(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	p, _, err := c.o.Profiles.Get(r.Context(), id)
	if err != nil {
		return err
	}
	k := kindOf(p.Kind)
	if k == nil {
		return mdmd.Errorf(mdmd.EInternal, "profile %s has unknown kind %q", p.ID, p.Kind)
	}
	in, err := profileInput(r, k)
	if err == nil {
		p, err = c.o.Profiles.Update(r.Context(), id, in)
	}
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError || mdmd.IsCode(err, mdmd.ENotFound) {
			return err
		}
		return c.profilePage(w, r, statusOf(err), id, &profileContent{Form: refusedProfileForm(r, k, err), Section: "edit"},
			&pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err)})
	}
	c.audit(r, "profile.update", "profile", p.ID, mdmd.OutcomeSuccess, "", map[string]any{"version": p.Version, "via": "console"})
	http.Redirect(w, r, "/profiles/"+p.ID+"?done=update", http.StatusSeeOther)
	return nil
}

func (c *Console) profileMobileconfig(w http.ResponseWriter, r *http.Request) error {
	xml, p, err := c.o.Profiles.Mobileconfig(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, p.Name)
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.mobileconfig"`)
	w.Write(xml)
	return nil
}

func (c *Console) deleteProfile(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := c.o.Profiles.Delete(r.Context(), id); err != nil {
		return err
	}
	c.audit(r, "profile.delete", "profile", id, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/profiles?done=delete", http.StatusSeeOther)
	return nil
}

// assignment reads an assignment form: a group (the target_id field), or
// the target type and ID of an assignment listed on the page.
func assignment(r *http.Request) *mdmd.ProfileAssignment {
	t := r.PostFormValue("target_type")
	if t == "" {
		t = mdmd.TargetGroup
	}
	return &mdmd.ProfileAssignment{ProfileID: chi.URLParam(r, "id"), TargetType: t, TargetID: strings.TrimSpace(r.PostFormValue("target_id"))}
}

func (c *Console) assignProfile(w http.ResponseWriter, r *http.Request) error {
	a := assignment(r)
	if err := c.o.Profiles.Assign(r.Context(), a); err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		if _, _, gerr := c.o.Profiles.Get(r.Context(), a.ProfileID); gerr != nil {
			return gerr // the profile itself is gone
		}
		return c.profilePage(w, r, statusOf(err), a.ProfileID, &profileContent{Section: "assign"},
			&pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err)})
	}
	c.audit(r, "profile.assign", "profile", a.ProfileID, mdmd.OutcomeSuccess, "", map[string]any{
		"profile_id": a.ProfileID, "target_type": a.TargetType, "target_id": a.TargetID, "via": "console"})
	http.Redirect(w, r, "/profiles/"+a.ProfileID+"?done=assign", http.StatusSeeOther)
	return nil
}

func (c *Console) unassignProfile(w http.ResponseWriter, r *http.Request) error {
	a := assignment(r)
	if err := c.o.Profiles.Unassign(r.Context(), a); err != nil {
		return err
	}
	c.audit(r, "profile.unassign", "profile", a.ProfileID, mdmd.OutcomeSuccess, "", map[string]any{
		"profile_id": a.ProfileID, "target_type": a.TargetType, "target_id": a.TargetID, "via": "console"})
	http.Redirect(w, r, "/profiles/"+a.ProfileID+"?done=unassign", http.StatusSeeOther)
	return nil
}
