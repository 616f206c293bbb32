package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/mdmd/mdmd"
)

// statusForCode is the one place where error codes become HTTP statuses.
func statusForCode(code string) int {
	switch code {
	case mdmd.EInvalid:
		return http.StatusBadRequest
	case mdmd.EUnauthenticated:
		return http.StatusUnauthorized
	case mdmd.EForbidden, mdmd.EDeviceAuth:
		return http.StatusForbidden
	case mdmd.ENotFound:
		return http.StatusNotFound
	case mdmd.EConflict, mdmd.ELeaseLost:
		return http.StatusConflict
	case mdmd.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case mdmd.EUnsupported:
		return http.StatusUnsupportedMediaType
	case mdmd.EMethod:
		return http.StatusMethodNotAllowed
	case mdmd.ERateLimited:
		return http.StatusTooManyRequests
	case mdmd.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// StatusOf is the HTTP status of err, from the same mapping; the console
// uses it for its pages.
func StatusOf(err error) int { return statusForCode(mdmd.ErrorCode(err)) }

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
	} `json:"error"`
}

// WriteError answers with err as JSON. Internal errors are logged with the
// request ID and answered without their details.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The client went away; nobody reads this answer.
		log.DebugContext(r.Context(), "request canceled", "request_id", RequestID(r.Context()), "path", LogPath(r))
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	code := mdmd.ErrorCode(err)
	status := statusForCode(code)
	if status >= 500 && code != mdmd.EUnavailable {
		log.ErrorContext(r.Context(), "request failed", "err", err, "request_id", RequestID(r.Context()),
			"method", r.Method, "path", LogPath(r))
	}
	var body ErrorBody
	body.Error.Code, body.Error.Message, body.Error.RequestID = code, mdmd.ErrorMessage(err), RequestID(r.Context())
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mdmd"`)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}
