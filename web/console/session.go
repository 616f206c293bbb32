package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/web"
)

type ctxKey int

const keyState ctxKey = 0

// reqState is the signed-in user of a request.
type reqState struct {
	sess      *mdmd.ConsoleSession
	user      *mdmd.AdminUser
	principal *mdmd.Principal
}

func stateFrom(ctx context.Context) *reqState {
	s, _ := ctx.Value(keyState).(*reqState)
	return s
}

func randomToken() string {
	b := make([]byte, 32) // 256 bits
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// cookieName is __Host- prefixed when cookies are Secure, so the browser
// guarantees the cookie was set by this host over HTTPS for every path.
func (c *Console) cookieName(base string) string {
	if c.secure {
		return "__Host-" + base
	}
	return base
}

func (c *Console) setCookie(w http.ResponseWriter, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(base), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
}

func (c *Console) cookie(r *http.Request, base string) string {
	ck, err := r.Cookie(c.cookieName(base))
	if err != nil {
		return ""
	}
	return ck.Value
}

func (c *Console) validCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return want != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// session resolves the request's session cookie: the session, its user
// and whether it is usable. An expired or idle session is deleted.
func (c *Console) session(r *http.Request) (*mdmd.ConsoleSession, *mdmd.AdminUser, string, error) {
	id := c.cookie(r, "mdmd_session")
	if id == "" || len(id) > 100 {
		return nil, nil, "", nil
	}
	h := hashID(id)
	sess, err := c.o.Store.GetConsoleSession(r.Context(), h)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, nil, "Your session has ended. Sign in again.", nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	now := c.o.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) > c.o.IdleTimeout {
		_ = c.o.Store.DeleteConsoleSession(r.Context(), h)
		return nil, nil, "Your session timed out. Sign in again.", nil
	}
	u, err := c.o.Store.GetAdminUser(r.Context(), sess.UserID)
	if mdmd.IsCode(err, mdmd.ENotFound) || (err == nil && u.Disabled) {
		_ = c.o.Store.DeleteConsoleSession(r.Context(), h)
		return nil, nil, "Your account is disabled.", nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	return sess, u, "", nil
}

// authenticate requires a signed-in session whose second factor is done.
// A browser without one is sent to the sign-in page (and back afterwards).
func (c *Console) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, u, msg, err := c.session(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if sess == nil || !sess.MFADone {
			if sess != nil {
				http.Redirect(w, r, "/login/totp?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if r.Method != http.MethodGet {
				c.fail(w, r, mdmd.Errorf(mdmd.EUnauthenticated, "You are not signed in (or your session ended). Sign in and try again."))
				return
			}
			q := url.Values{"next": {r.URL.RequestURI()}}
			if msg != "" {
				q.Set("msg", msg)
			}
			http.Redirect(w, r, "/login?"+q.Encode(), http.StatusSeeOther)
			return
		}
		// A page's own automatic refresh (a bulk action's progress) is
		// not a person using the console: it does not keep the session
		// from going idle.
		if r.URL.Query().Get(AutoRefresh) == "" {
			if err := c.o.Store.TouchConsoleSession(r.Context(), sess.IDHash, c.o.Now()); err != nil {
				c.log.Warn("recording session use failed", "err", err)
			}
		}
		p := &mdmd.Principal{Type: mdmd.ActorAdmin, ID: u.ID, Name: u.Username, Role: u.Role, Person: u.ID}
		ctx := web.WithPrincipal(r.Context(), p)
		ctx = context.WithValue(ctx, keyState, &reqState{sess: sess, user: u, principal: p})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// AutoRefresh marks the request of a page's automatic refresh.
const AutoRefresh = "auto"

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/login") || len(next) > 1000 ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		// Browsers drop tabs and newlines and read \ as /, so "/\t/evil"
		// or "/\\evil" would leave the site.
		return "/"
	}
	return next
}

type loginContent struct {
	Next     string
	Username string
	// TOTP enrollment
	Enroll bool
	URI    string
	Secret string
	QR     template.URL // a data: URI of the QR code's PNG, made here
}

// loginForm shows the sign-in form, with a CSRF token bound to a cookie
// (there is no session yet to bind it to).
func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if sess, _, _, err := c.session(r); err == nil && sess != nil && sess.MFADone {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, "", "", r.URL.Query().Get("msg"))
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, username, errMsg, flash string) {
	tok := c.cookie(r, "mdmd_login")
	if len(tok) != 43 {
		tok = randomToken()
		c.setCookie(w, "mdmd_login", tok, 3600)
	}
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	c.render(w, r, status, "login", &pageData{Title: "Sign in", CSRF: tok, Error: errMsg, Flash: flash,
		Content: loginContent{Next: safeNext(next), Username: username}})
}

// dummyHash is checked when the username is unknown, so that a sign-in
// takes as long for a missing user as for a wrong password.
var dummyHash, _ = auth.HashPassword("mdmd-timing-equaliser-password")

const badLogin = "Wrong username or password."

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tok := c.cookie(r, "mdmd_login")
	if tok == "" || r.PostFormValue("csrf") == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(r.PostFormValue("csrf"))) != 1 {
		c.audit(r, "access.denied", "route", "POST /login", mdmd.OutcomeDenied, "missing or wrong CSRF token", nil)
		c.showLogin(w, r, http.StatusForbidden, "", "The form's security token was missing or out of date. Try again.", "")
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	if username == "" || password == "" {
		c.showLogin(w, r, http.StatusBadRequest, username, "Enter your username and password.", "")
		return
	}
	u, err := c.o.Store.GetAdminUserByUsername(ctx, username)
	if err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
		c.fail(w, r, err)
		return
	}
	now := c.o.Now()
	if err != nil {
		auth.CheckPassword(dummyHash, password)
		c.audit(r, "console.login", "admin_user", "", mdmd.OutcomeFailure, "unknown user", map[string]string{"username": username})
		c.showLogin(w, r, http.StatusUnauthorized, username, badLogin, "")
		return
	}
	if u.LockedUntil != nil && now.Before(*u.LockedUntil) {
		c.auditAs(r, u, "console.login", "admin_user", u.ID, mdmd.OutcomeDenied, "account locked", nil)
		c.showLogin(w, r, http.StatusTooManyRequests, username, lockedMessage(*u.LockedUntil, now), "")
		return
	}
	if !auth.CheckPassword(u.PasswordHash, password) || u.Disabled {
		c.loginFailed(w, r, u, "wrong password")
		return
	}
	mfa, err := c.needsMFA(ctx, u)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.startSession(w, r, u, !mfa); err != nil {
		c.fail(w, r, err)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if mfa {
		http.Redirect(w, r, "/login/totp?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	c.signedIn(r, u)
	http.Redirect(w, r, home(u.Role, next), http.StatusSeeOther)
}

func lockedMessage(until, now time.Time) string {
	mins := int(until.Sub(now).Minutes()) + 1
	return "Too many failed sign-ins: this account is locked for " + plural(mins, "more minute") + "."
}

// loginFailed counts a failed password or code towards the lockout.
func (c *Console) loginFailed(w http.ResponseWriter, r *http.Request, u *mdmd.AdminUser, why string) {
	got, err := c.o.Store.RecordLoginFailure(r.Context(), u.ID, c.o.MaxFailures, c.o.LockFor)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.auditAs(r, u, "console.login", "admin_user", u.ID, mdmd.OutcomeFailure, why, nil)
	msg := badLogin
	if why == "wrong code" {
		msg = "That code is wrong or was already used. Enter the current code from your authenticator app."
	}
	status := http.StatusUnauthorized
	if got.LockedUntil != nil && c.o.Now().Before(*got.LockedUntil) {
		msg, status = lockedMessage(*got.LockedUntil, c.o.Now()), http.StatusTooManyRequests
		c.auditAs(r, u, "console.lockout", "admin_user", u.ID, mdmd.OutcomeSuccess, "", map[string]any{"until": got.LockedUntil})
		c.endSession(w, r)
	}
	if why == "wrong code" && status != http.StatusTooManyRequests {
		c.showTOTP(w, r, status, msg)
		return
	}
	c.showLogin(w, r, status, u.Username, msg, "")
}

func (c *Console) signedIn(r *http.Request, u *mdmd.AdminUser) {
	if err := c.o.Store.RecordLoginSuccess(r.Context(), u.ID); err != nil {
		c.log.Warn("recording sign-in failed", "err", err)
	}
	c.auditAs(r, u, "console.login", "admin_user", u.ID, mdmd.OutcomeSuccess, "", map[string]string{"username": u.Username})
}

// needsMFA reports whether the user signs in with a second factor: the
// roles that require one, and anyone who enrolled one.
func (c *Console) needsMFA(ctx context.Context, u *mdmd.AdminUser) (bool, error) {
	for _, role := range c.o.MFARoles {
		if u.Role == role {
			return true, nil
		}
	}
	f, err := c.o.Store.GetAdminTOTP(ctx, u.ID)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return false, nil
	}
	return err == nil && f.ConfirmedAt != nil, err
}

// startSession creates a new session (a fresh ID, so a session ID known
// before sign-in is worthless after) and sets its cookie; it ends the
// request's previous session. Old sessions are pruned on the way.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, u *mdmd.AdminUser, mfaDone bool) error {
	c.endSession(w, r)
	if _, err := c.o.Store.PruneConsoleSessions(r.Context(), c.o.Now().Add(-c.o.IdleTimeout)); err != nil {
		c.log.Warn("pruning console sessions failed", "err", err)
	}
	id := randomToken()
	sess := &mdmd.ConsoleSession{IDHash: hashID(id), UserID: u.ID, CSRFToken: randomToken(), MFADone: mfaDone,
		ExpiresAt: c.o.Now().Add(c.o.MaxLifetime)}
	if !mfaDone {
		sess.ExpiresAt = c.o.Now().Add(10 * time.Minute) // time to enter the code
	}
	if err := c.o.Store.CreateConsoleSession(r.Context(), sess); err != nil {
		return err
	}
	c.setCookie(w, "mdmd_session", id, 0)
	return nil
}

func (c *Console) endSession(w http.ResponseWriter, r *http.Request) {
	if id := c.cookie(r, "mdmd_session"); id != "" && len(id) <= 100 {
		if err := c.o.Store.DeleteConsoleSession(r.Context(), hashID(id)); err != nil {
			c.log.Warn("ending console session failed", "err", err)
		}
		c.setCookie(w, "mdmd_session", "", -1)
	}
}

// pendingMFA returns the session waiting for its second factor.
func (c *Console) pendingMFA(w http.ResponseWriter, r *http.Request) (*mdmd.ConsoleSession, *mdmd.AdminUser, bool) {
	sess, u, msg, err := c.session(r)
	if err != nil {
		c.fail(w, r, err)
		return nil, nil, false
	}
	if sess == nil {
		if msg == "" {
			msg = "Sign in first."
		}
		http.Redirect(w, r, "/login?msg="+url.QueryEscape(msg), http.StatusSeeOther)
		return nil, nil, false
	}
	if sess.MFADone {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil, nil, false
	}
	return sess, u, true
}

func (c *Console) totpForm(w http.ResponseWriter, r *http.Request) {
	c.showTOTP(w, r, http.StatusOK, "")
}

// showTOTP asks for the code; a user without a confirmed factor enrolls
// one first, scanning the otpauth:// URI that is shown.
func (c *Console) showTOTP(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	sess, u, ok := c.pendingMFA(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	content := loginContent{Next: safeNext(r.FormValue("next")), Username: u.Username}
	f, err := c.o.Store.GetAdminTOTP(ctx, u.ID)
	if err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
		c.fail(w, r, err)
		return
	}
	if err != nil || f.ConfirmedAt == nil {
		var secret string
		if err == nil {
			raw, err := c.o.Box.Open(f.SecretSealed, "totp:"+u.ID)
			if err != nil {
				c.fail(w, r, err)
				return
			}
			secret = string(raw)
		} else {
			secret = newTOTPSecret()
			sealed, err := c.o.Box.Seal([]byte(secret), "totp:"+u.ID)
			if err == nil {
				err = c.o.Store.PutPendingTOTP(ctx, u.ID, sealed)
			}
			if err != nil {
				c.fail(w, r, err)
				return
			}
		}
		content.Enroll, content.Secret = true, secret
		content.URI = otpauthURI(c.o.Issuer, u.Username, secret)
		if png, err := qrcode.Encode(content.URI, qrcode.Medium, 220); err == nil {
			content.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		}
	}
	c.render(w, r, status, "totp", &pageData{Title: "Second factor", CSRF: sess.CSRFToken, Error: errMsg, Content: content})
}

func (c *Console) totp(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := c.pendingMFA(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if !c.validCSRF(r, sess.CSRFToken) {
		c.audit(r, "access.denied", "route", "POST /login/totp", mdmd.OutcomeDenied, "missing or wrong CSRF token", nil)
		c.showTOTP(w, r, http.StatusForbidden, "The form's security token was missing or out of date. Try again.")
		return
	}
	f, err := c.o.Store.GetAdminTOTP(ctx, u.ID)
	if err != nil {
		c.showTOTP(w, r, http.StatusBadRequest, "Set up your authenticator app first.")
		return
	}
	raw, err := c.o.Box.Open(f.SecretSealed, "totp:"+u.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	step, match := matchTOTP(string(raw), r.PostFormValue("code"), c.o.Now())
	accepted := false
	if match {
		if accepted, err = c.o.Store.UseTOTPStep(ctx, u.ID, step, f.ConfirmedAt == nil); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	if !accepted {
		c.loginFailed(w, r, u, "wrong code")
		return
	}
	if f.ConfirmedAt == nil {
		c.auditAs(r, u, "console.totp_enroll", "admin_user", u.ID, mdmd.OutcomeSuccess, "", nil)
	}
	if err := c.startSession(w, r, u, true); err != nil {
		c.fail(w, r, err)
		return
	}
	c.signedIn(r, u)
	http.Redirect(w, r, home(u.Role, safeNext(r.PostFormValue("next"))), http.StatusSeeOther)
}

// home is where a sign-in lands: next, unless that is the dashboard and
// the role cannot read devices (an auditor starts at the audit log).
func home(role mdmd.Role, next string) string {
	if next == "/" && !role.Can(mdmd.PermDevicesRead) && role.Can(mdmd.PermAuditRead) {
		return "/audit"
	}
	return next
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	c.audit(r, "console.logout", "admin_user", stateFrom(r.Context()).user.ID, mdmd.OutcomeSuccess, "", nil)
	c.endSession(w, r)
	http.Redirect(w, r, "/login?msg="+url.QueryEscape("You signed out."), http.StatusSeeOther)
	return nil
}
