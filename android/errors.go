package android

import (
	"errors"
	"net/http"

	"google.golang.org/api/googleapi"

	"github.com/mdmd/mdmd"
)

// amapiErr maps an AMAPI error to mdmd's: AMAPI's 4xx keep their meaning,
// its outages are unavailable (and retried by the jobs that call it).
func amapiErr(err error) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return mdmd.Errorf(mdmd.EUnavailable, "Android Management API unreachable: %v", err)
	}
	msg := "Android Management API: " + ge.Message
	switch {
	case ge.Code == http.StatusNotFound:
		return mdmd.Errorf(mdmd.ENotFound, "%s", msg)
	case ge.Code == http.StatusTooManyRequests:
		return mdmd.Errorf(mdmd.ERateLimited, "%s", msg)
	case ge.Code >= 500:
		return mdmd.Errorf(mdmd.EUnavailable, "%s", msg)
	case ge.Code == http.StatusConflict:
		return mdmd.Errorf(mdmd.EConflict, "%s", msg)
	}
	return mdmd.Errorf(mdmd.EInvalid, "%s", msg)
}
