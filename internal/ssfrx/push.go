package ssfrx

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
)

// PushHandler returns the RFC 8935 push endpoint.
//
// In order: while SetDown(true) every request gets 503; a method other than
// POST gets 405; when SetPushAuthorization configured a value, a request
// whose Authorization header is not exactly that value gets 401; a
// Content-Type other than application/secevent+jwt gets 415; a body that is
// not a valid SET gets 400 with Content-Type application/json and
// {"err": <code>, "description": <text>}. A valid SET is stored and answered
// 202 Accepted with an empty body. Every request is counted (PushRequests).
func (r *Receiver) PushHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.pushCount.Add(1)
		if r.down.Load() {
			http.Error(w, "receiver unavailable", http.StatusServiceUnavailable)
			return
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "push delivery requires POST", http.StatusMethodNotAllowed)
			return
		}
		r.mu.Lock()
		want := r.pushAuth
		r.mu.Unlock()
		if want != "" {
			got := req.Header.Get("Authorization")
			if len(req.Header.Values("Authorization")) != 1 || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				scheme, _, _ := strings.Cut(want, " ")
				w.Header().Set("WWW-Authenticate", scheme)
				writeSETError(w, http.StatusUnauthorized, CodeAuthenticationFailed, "missing or wrong Authorization header")
				return
			}
		}
		if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/secevent+jwt" {
			writeSETError(w, http.StatusUnsupportedMediaType, CodeInvalidRequest,
				"Content-Type must be application/secevent+jwt, got "+req.Header.Get("Content-Type"))
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			writeSETError(w, http.StatusBadRequest, CodeInvalidRequest, "unreadable or oversized body")
			return
		}
		set, err := r.verify(req.Context(), string(body), "")
		if err != nil {
			r.reject("push", string(body), err)
			code, desc := errorCode(err)
			writeSETError(w, http.StatusBadRequest, code, desc)
			return
		}
		r.store(set)
		w.WriteHeader(http.StatusAccepted)
	})
}

func writeSETError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(SETErr{Err: code, Description: desc})
}
