package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/users"
)

// AdminStore is what the settings pages for API tokens and users need.
type AdminStore interface {
	users.Store
	ListAPITokens(ctx context.Context) ([]mdmd.APIToken, error)
	CreateAPIToken(ctx context.Context, t *mdmd.APIToken) error
	RevokeAPIToken(ctx context.Context, id string) (*mdmd.APIToken, error)
}

type tokensContent struct {
	Tokens []mdmd.APIToken
	Roles  []mdmd.Role
	// Secret is a token just created: shown once, on this page only.
	Secret  string
	Created *mdmd.APIToken
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, status int, content *tokensContent, data *pageData) error {
	ts, err := c.o.Admin.ListAPITokens(r.Context())
	if err != nil {
		return err
	}
	content.Tokens, content.Roles = ts, mdmd.Roles
	data.Title, data.Nav, data.Content = "API tokens", "settings", content
	c.render(w, r, status, "tokens", data)
	return nil
}

func (c *Console) tokens(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if r.URL.Query().Get("done") == "revoke" {
		data.Flash = "The token was revoked."
	}
	return c.tokensPage(w, r, http.StatusOK, &tokensContent{}, data)
}

// createToken mints a token and shows its secret once.
func (c *Console) createToken(w http.ResponseWriter, r *http.Request) error {
	days, _ := strconv.Atoi(r.PostFormValue("days"))
	req := auth.TokenRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Role: mdmd.Role(r.PostFormValue("role")),
		Audience: strings.TrimSpace(r.PostFormValue("audience")), Days: days}
	t, secret, err := auth.IssueToken(r.Context(), c.o.Admin, stateFrom(r.Context()).principal, req, c.o.Now())
	if err != nil {
		return refusedForm(r, err, func(status int, data *pageData) error { return c.tokensPage(w, r, status, &tokensContent{}, data) })
	}
	c.audit(r, "token.create", "token", t.ID, mdmd.OutcomeSuccess, "",
		map[string]any{"name": t.Name, "role": t.Role, "audience": t.Audience, "expires_at": t.ExpiresAt, "via": "console"})
	return c.tokensPage(w, r, http.StatusCreated, &tokensContent{Secret: secret, Created: t},
		&pageData{Flash: "Token created. Copy its secret now: it is not shown again."})
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	t, err := c.o.Admin.RevokeAPIToken(r.Context(), id)
	if err != nil {
		return err
	}
	c.audit(r, "token.revoke", "token", id, mdmd.OutcomeSuccess, "", map[string]any{"name": t.Name, "via": "console"})
	http.Redirect(w, r, "/settings/tokens?done=revoke", http.StatusSeeOther)
	return nil
}

type usersContent struct {
	Users []mdmd.AdminUser
	Roles []mdmd.Role
	Me    string
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, status int, data *pageData) error {
	us, err := c.o.Admin.ListAdminUsers(r.Context())
	if err != nil {
		return err
	}
	data.Title, data.Nav = "Users", "settings"
	data.Content = &usersContent{Users: us, Roles: mdmd.Roles, Me: stateFrom(r.Context()).user.ID}
	c.render(w, r, status, "users", data)
	return nil
}

func (c *Console) usersList(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	if d := r.URL.Query().Get("done"); d != "" {
		data.Flash = map[string]string{"create": "User created.", "disable": "User disabled; their tokens were revoked.",
			"enable": "User enabled.", "reset-totp": "Second factor reset: they enroll a new one at their next sign-in."}[d]
	}
	return c.usersPage(w, r, http.StatusOK, data)
}

// userChange runs a change and shows the list again, with the error next
// to the form if it failed.
func (c *Console) userChange(w http.ResponseWriter, r *http.Request, done string, run func(svc users.Service) (string, map[string]any, error)) error {
	target, details, err := run(users.Service{Store: c.o.Admin})
	if err != nil {
		return refusedForm(r, err, func(status int, data *pageData) error { return c.usersPage(w, r, status, data) })
	}
	details["via"] = "console"
	c.audit(r, "user."+strings.ReplaceAll(done, "-", "_"), "admin_user", target, mdmd.OutcomeSuccess, "", details)
	http.Redirect(w, r, "/settings/users?done="+url.QueryEscape(done), http.StatusSeeOther)
	return nil
}

func (c *Console) createUser(w http.ResponseWriter, r *http.Request) error {
	return c.userChange(w, r, "create", func(svc users.Service) (string, map[string]any, error) {
		u, err := svc.Create(r.Context(), strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("password"),
			mdmd.Role(r.PostFormValue("role")))
		if err != nil {
			return "", nil, err
		}
		return u.ID, map[string]any{"username": u.Username, "role": u.Role}, nil
	})
}

func (c *Console) setUserDisabled(disabled bool) handlerFunc {
	done := map[bool]string{true: "disable", false: "enable"}[disabled]
	return func(w http.ResponseWriter, r *http.Request) error {
		return c.userChange(w, r, done, func(svc users.Service) (string, map[string]any, error) {
			id := chi.URLParam(r, "id")
			_, revoked, err := svc.Update(r.Context(), stateFrom(r.Context()).principal, id, users.Change{Disabled: &disabled})
			return id, map[string]any{"disabled": disabled, "tokens_revoked": revoked}, err
		})
	}
}

func (c *Console) resetTOTP(w http.ResponseWriter, r *http.Request) error {
	return c.userChange(w, r, "reset-totp", func(svc users.Service) (string, map[string]any, error) {
		id := chi.URLParam(r, "id")
		return id, map[string]any{}, svc.ResetTOTP(r.Context(), id)
	})
}
