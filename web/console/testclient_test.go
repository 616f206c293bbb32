package console

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// signIn creates a console user of the role, named "u-<role>", with a
// session that passed its second factor. It returns the session ID and
// the user; the session's CSRF token is "csrf-" + the ID.
func signIn(t testing.TB, st *storage.Store, role mdmd.Role) (string, *mdmd.AdminUser) {
	t.Helper()
	ctx := context.Background()
	u := &mdmd.AdminUser{Username: "u-" + string(role), PasswordHash: "x", Role: role}
	if err := st.CreateAdminUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	now, id := time.Now(), "session-"+string(role)
	if err := st.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: hashID(id), UserID: u.ID, CSRFToken: "csrf-" + id,
		MFADone: true, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return id, u
}

// send sends a console request in the session sid (of a console served
// at http://127.0.0.1). A form carries the session's CSRF token unless
// its "csrf" is "-"; with file set it is sent as multipart/form-data, the
// file as the field "mobileconfig". The caller's form is not changed.
func send(h http.Handler, sid, method, path string, form url.Values, file []byte) (int, string) {
	req := httptest.NewRequest(method, path, nil)
	if form != nil {
		f := cloneValues(form)
		switch f.Get("csrf") {
		case "":
			f.Set("csrf", "csrf-"+sid)
		case "-":
			f.Del("csrf")
		}
		if file != nil {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			for k, vs := range f {
				for _, v := range vs {
					mw.WriteField(k, v)
				}
			}
			fw, _ := mw.CreateFormFile("mobileconfig", "profile.mobileconfig")
			fw.Write(file)
			mw.Close()
			req = httptest.NewRequest(method, path, &body)
			req.Header.Set("Content-Type", mw.FormDataContentType())
		} else {
			req = httptest.NewRequest(method, path, strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Origin", "http://127.0.0.1")
	}
	req.AddCookie(&http.Cookie{Name: "mdmd_session", Value: sid})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
