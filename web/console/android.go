package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
)

// AndroidEnterprise is the Android Enterprise binding (package android),
// as the admin API offers it.
type AndroidEnterprise interface {
	Configured() bool
	View(ctx context.Context, e *android.Enterprise) (*android.EnterpriseView, error)
	PendingSignup(ctx context.Context) (string, error)
	StartSignup(ctx context.Context, callbackURL string) (*am.SignupUrl, error)
	CompleteSignup(ctx context.Context, signupURLName, enterpriseToken, displayName string) (*android.Enterprise, error)
	BindExisting(ctx context.Context, name string) (*android.Enterprise, error)
}

// registerAndroid adds these pages' routes when Options.AndroidEnterprise is set.
func (c *Console) registerAndroid(r chi.Router) {
	if c.o.AndroidEnterprise == nil {
		return
	}
	c.handle(r, "GET", "/settings/android", mdmd.PermSettingsManage, c.androidSettings)
	c.handle(r, "POST", "/settings/android/signup", mdmd.PermSettingsManage, c.androidSignup)
	c.handle(r, "POST", "/settings/android/enterprise", mdmd.PermSettingsManage, c.androidComplete)
	c.handle(r, "POST", "/settings/android/bind", mdmd.PermSettingsManage, c.androidBind)
}

type androidContent struct {
	Configured bool
	Enterprise *android.EnterpriseView // nil when none is bound
	BoundAt    *time.Time              // from the audit log, when it has the binding
	BoundBy    string
	// SignupURL is Google's sign-up page, just asked for; SignupName and
	// Token fill the form that completes the sign-up.
	SignupURL, SignupName, Token string
	Section                      string // the form an error belongs to: signup, complete or bind
}

func (c *Console) androidPage(w http.ResponseWriter, r *http.Request, status int, content *androidContent, data *pageData) error {
	a := c.o.AndroidEnterprise
	content.Configured = a.Configured()
	if content.Configured {
		v, err := a.View(r.Context(), nil)
		switch {
		case err == nil:
			content.Enterprise = v
			c.boundWhen(r, content)
		case !mdmd.IsCode(err, mdmd.EConflict):
			return err
		}
		if content.SignupName == "" {
			if content.SignupName, err = a.PendingSignup(r.Context()); err != nil {
				return err
			}
		}
	}
	data.Title, data.Nav, data.Content = "Android Enterprise", "settings", content
	c.render(w, r, status, "android", data)
	return nil
}

// boundWhen finds when, and by whom, the enterprise was bound, in the
// audit log (the binding itself does not record it).
func (c *Console) boundWhen(r *http.Request, content *androidContent) {
	if c.o.Audit == nil {
		return
	}
	events, _, err := c.o.Audit.ListAudit(r.Context(), mdmd.AuditFilter{TargetID: content.Enterprise.Name, Limit: 20})
	if err != nil {
		c.log.WarnContext(r.Context(), "console: reading the Android binding's audit entry failed", "err", err)
		return
	}
	for _, e := range events {
		if (e.Action == "android.enterprise.create" || e.Action == "android.enterprise.bind") && e.Outcome == mdmd.OutcomeSuccess {
			at := e.At
			content.BoundAt, content.BoundBy = &at, e.Actor
			return
		}
	}
}

func (c *Console) androidSettings(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	switch r.URL.Query().Get("done") {
	case "create":
		data.Flash = "Enterprise created and bound. Android devices can enroll with tokens from the enrollment page."
	case "bind":
		data.Flash = "Enterprise bound."
	}
	// Google's sign-up page returns here with the enterprise token.
	return c.androidPage(w, r, http.StatusOK, &androidContent{Token: r.URL.Query().Get("enterpriseToken")}, data)
}

// androidFormError shows a refused form's error next to it.
func (c *Console) androidFormError(w http.ResponseWriter, r *http.Request, section string, err error, content *androidContent) error {
	content.Section = section
	return refusedForm(r, err, func(status int, data *pageData) error { return c.androidPage(w, r, status, content, data) })
}

// androidSignup asks Google for a sign-up page that returns to this one.
func (c *Console) androidSignup(w http.ResponseWriter, r *http.Request) error {
	u, err := c.o.AndroidEnterprise.StartSignup(r.Context(), c.baseURL(r)+"/settings/android")
	if err != nil {
		return c.androidFormError(w, r, "signup", err, &androidContent{})
	}
	c.audit(r, "android.signup", "setting", "android.enterprise", mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	return c.androidPage(w, r, http.StatusOK, &androidContent{SignupURL: u.Url, SignupName: u.Name}, &pageData{
		Flash: "Open Google's sign-up page, then complete the sign-up below with the enterprise token it gives."})
}

func (c *Console) androidComplete(w http.ResponseWriter, r *http.Request) error {
	name, token := strings.TrimSpace(r.PostFormValue("signup_url_name")), strings.TrimSpace(r.PostFormValue("enterprise_token"))
	e, err := c.o.AndroidEnterprise.CompleteSignup(r.Context(), name, token, strings.TrimSpace(r.PostFormValue("display_name")))
	if err != nil {
		return c.androidFormError(w, r, "complete", err, &androidContent{SignupName: name, Token: token})
	}
	c.audit(r, "android.enterprise.create", "setting", e.Name, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/settings/android?done=create", http.StatusSeeOther)
	return nil
}

func (c *Console) androidBind(w http.ResponseWriter, r *http.Request) error {
	e, err := c.o.AndroidEnterprise.BindExisting(r.Context(), strings.TrimSpace(r.PostFormValue("name")))
	if err != nil {
		return c.androidFormError(w, r, "bind", err, &androidContent{})
	}
	c.audit(r, "android.enterprise.bind", "setting", e.Name, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/settings/android?done=bind", http.StatusSeeOther)
	return nil
}

// baseURL is the server's URL as browsers reach it.
func (c *Console) baseURL(r *http.Request) string {
	if c.origin != "" {
		return c.origin
	}
	if r.TLS != nil || c.secure {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}
