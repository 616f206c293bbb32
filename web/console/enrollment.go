package console

import (
	"context"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/enroll"
)

// Enrollment is what the enrollment page needs: iOS enrollment links
// and, when Android Enterprise is bound, Android enrollment tokens.
type Enrollment struct {
	Links interface {
		CreateLink(ctx context.Context, in enroll.LinkInput, by string) (*mdmd.EnrollmentLink, string, error)
	}
	Android interface {
		Configured() bool
		CreateToken(ctx context.Context, in android.TokenInput, by string) (*android.IssuedToken, error)
		RevokeToken(ctx context.Context, id string) (*mdmd.AndroidToken, error)
	}
	Store interface {
		ListEnrollmentLinks(ctx context.Context, platform mdmd.Platform) ([]mdmd.EnrollmentLink, error)
		RevokeEnrollmentLink(ctx context.Context, id string) (*mdmd.EnrollmentLink, error)
		ListAndroidTokens(ctx context.Context) ([]mdmd.AndroidToken, error)
	}
}

type enrollmentContent struct {
	Links   []mdmd.EnrollmentLink
	Tokens  []mdmd.AndroidToken
	Android bool
	// A link or token just created, shown once.
	NewURL   string
	NewToken *android.IssuedToken
	NewQR    template.URL // data: URI of the provisioning QR code
	Section  string       // "ios" or "android": where a form error belongs
}

func (c *Console) enrollmentPage(w http.ResponseWriter, r *http.Request, status int, content *enrollmentContent, data *pageData) error {
	e := c.o.Enrollment
	var err error
	if content.Links, err = e.Store.ListEnrollmentLinks(r.Context(), mdmd.PlatformIOS); err != nil {
		return err
	}
	content.Android = e.Android != nil && e.Android.Configured()
	if content.Android {
		if content.Tokens, err = e.Store.ListAndroidTokens(r.Context()); err != nil {
			return err
		}
	}
	data.Title, data.Nav, data.Content = "Enrollment", "enrollment", content
	c.render(w, r, status, "enrollment", data)
	return nil
}

func (c *Console) enrollment(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if r.URL.Query().Get("done") == "revoke" {
		data.Flash = "Revoked: it can enroll no more devices."
	}
	return c.enrollmentPage(w, r, http.StatusOK, &enrollmentContent{}, data)
}

func (c *Console) formError(w http.ResponseWriter, r *http.Request, section string, err error) error {
	return refusedForm(r, err, func(status int, data *pageData) error {
		return c.enrollmentPage(w, r, status, &enrollmentContent{Section: section}, data)
	})
}

func (c *Console) createLink(w http.ResponseWriter, r *http.Request) error {
	hours, _ := strconv.Atoi(r.PostFormValue("hours"))
	oneTime := r.PostFormValue("one_time") == "on"
	in := enroll.LinkInput{Platform: mdmd.PlatformIOS, OneTime: &oneTime, ExpiresInHours: hours,
		Ownership: mdmd.Ownership(r.PostFormValue("ownership")), OwnerUser: strings.TrimSpace(r.PostFormValue("owner"))}
	if in.Ownership != "" && !in.Ownership.Valid() {
		return c.formError(w, r, "ios", mdmd.FieldError("ownership", "must be corporate or personal"))
	}
	l, u, err := c.o.Enrollment.Links.CreateLink(r.Context(), in, stateFrom(r.Context()).principal.Name)
	if err != nil {
		return c.formError(w, r, "ios", err)
	}
	c.audit(r, "enrollment_link.create", "enrollment_link", l.ID, mdmd.OutcomeSuccess, "",
		map[string]any{"one_time": l.OneTime, "ownership": l.Ownership, "owner_user": l.OwnerUser, "expires_at": l.ExpiresAt, "via": "console"})
	return c.enrollmentPage(w, r, http.StatusCreated, &enrollmentContent{NewURL: u},
		&pageData{Flash: "Link created. Send it to the device's user now: it is not shown again."})
}

func (c *Console) revokeLink(w http.ResponseWriter, r *http.Request) error {
	l, err := c.o.Enrollment.Store.RevokeEnrollmentLink(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	c.audit(r, "enrollment_link.revoke", "enrollment_link", l.ID, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/enrollment?done=revoke", http.StatusSeeOther)
	return nil
}

func (c *Console) createAndroidToken(w http.ResponseWriter, r *http.Request) error {
	if a := c.o.Enrollment.Android; a == nil || !a.Configured() {
		return mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured")
	}
	hours, _ := strconv.Atoi(r.PostFormValue("hours"))
	oneTime := r.PostFormValue("one_time") == "on"
	in := android.TokenInput{Kind: r.PostFormValue("kind"), OwnerUser: strings.TrimSpace(r.PostFormValue("owner")),
		DurationHours: hours, OneTime: &oneTime}
	tok, err := c.o.Enrollment.Android.CreateToken(r.Context(), in, stateFrom(r.Context()).principal.Name)
	if err != nil {
		return c.formError(w, r, "android", err)
	}
	c.audit(r, "android.token.create", "android_token", tok.Token.ID, mdmd.OutcomeSuccess, "",
		map[string]any{"kind": tok.Token.Kind, "owner_user": tok.Token.OwnerUser, "via": "console"})
	content := &enrollmentContent{NewToken: tok}
	if png, err := qrcode.Encode(tok.QRCode, qrcode.Medium, 320); err == nil {
		content.NewQR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	}
	return c.enrollmentPage(w, r, http.StatusCreated, content,
		&pageData{Flash: "Token created. Scan the QR code during the device's setup; it is not shown again."})
}

func (c *Console) revokeAndroidToken(w http.ResponseWriter, r *http.Request) error {
	if c.o.Enrollment.Android == nil {
		return mdmd.Errorf(mdmd.EConflict, "Android Enterprise is not configured")
	}
	t, err := c.o.Enrollment.Android.RevokeToken(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	c.audit(r, "android.token.revoke", "android_token", t.ID, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/enrollment?done=revoke", http.StatusSeeOther)
	return nil
}
