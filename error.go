package mdmd

import (
	"errors"
	"fmt"
)

// Error codes are stable strings that clients can rely on. The HTTP layer
// maps each one to exactly one status code (see web.statusForCode).
const (
	EInvalid         = "invalid"          // the request is malformed or violates a rule
	EUnauthenticated = "unauthenticated"  // no valid credential
	EForbidden       = "forbidden"        // authenticated but not allowed
	ENotFound        = "not_found"        // the target does not exist
	EConflict        = "conflict"         // the change collides with stored state
	ETooLarge        = "too_large"        // the request body exceeds the limit
	EUnavailable     = "unavailable"      // a dependency (the database) is not ready
	ERateLimited     = "rate_limited"     // too many requests
	EInternal        = "internal"         // a bug or an unexpected failure
	ELeaseLost       = "lease_lost"       // a job's lease was taken over by another worker
	EUnsupported     = "unsupported_type" // a media type the endpoint does not accept
	EMethod          = "method_not_allowed"
	// EDeviceAuth is a device request whose identity does not check out.
	// It maps to 403, never 401: a 401 makes an Apple device unenroll.
	EDeviceAuth = "device_unauthenticated"
)

// Error is an application error with a stable code and a message that is
// safe to show to the caller.
type Error struct {
	Code    string
	Message string
	// Field names the offending input, when there is one.
	Field string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("mdmd %s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("mdmd %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EInvalid error naming the field at fault.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the caller-safe message of err. Errors that are not
// *Error are internal and their text is not exposed.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Field != "" {
			return e.Field + ": " + e.Message
		}
		return e.Message
	}
	return "internal error"
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }
