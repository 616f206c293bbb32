package console

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/ssf"
)

// SSFAdmin is the transmitter's administrator side (package ssf) that the
// shared-signals page uses; the admin API uses the same methods.
type SSFAdmin interface {
	AdminStreams(ctx context.Context) ([]ssf.AdminStream, error)
	AdminSetStatus(ctx context.Context, id, status, reason string) (*mdmd.SSFStream, error)
	AdminDelete(ctx context.Context, id string) error
}

// registerSSF adds these pages' routes when Options.SSF is set. All need
// settings:manage, as the API's administrator routes.
func (c *Console) registerSSF(r chi.Router) {
	if c.o.SSF == nil {
		return
	}
	const perm = mdmd.PermSettingsManage
	c.handle(r, "GET", "/settings/ssf", perm, c.ssfStreams)
	c.handle(r, "POST", "/settings/ssf/{id}/status", perm, c.ssfStatus)
	c.handle(r, "POST", "/settings/ssf/{id}/delete", perm, c.ssfDelete)
}

type ssfContent struct {
	Streams  []ssf.AdminStream
	Statuses []string
	// Stream is the stream whose form is shown again with the error.
	Stream string
}

func (c *Console) ssfPage(w http.ResponseWriter, r *http.Request, status int, content *ssfContent, data *pageData) error {
	streams, err := c.o.SSF.AdminStreams(r.Context())
	if err != nil {
		return err
	}
	content.Streams, content.Statuses = streams, mdmd.SSFStatuses
	data.Title, data.Nav, data.Content = "Shared Signals streams", "settings", content
	c.render(w, r, status, "ssf", data)
	return nil
}

func (c *Console) ssfStreams(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	switch r.URL.Query().Get("done") {
	case "status":
		data.Flash = "Stream status changed; the receiver was sent a stream-updated event. It cannot undo a pause or disable you set."
	case "delete":
		data.Flash = "Stream deleted."
	}
	return c.ssfPage(w, r, http.StatusOK, &ssfContent{}, data)
}

// ssfRefused shows the page again with the error next to the stream's form.
func (c *Console) ssfRefused(w http.ResponseWriter, r *http.Request, id string, err error) error {
	if statusOf(err) == http.StatusInternalServerError || statusOf(err) == http.StatusNotFound {
		return err
	}
	return c.ssfPage(w, r, statusOf(err), &ssfContent{Stream: id}, refusedData(r, err))
}

// ssfStatus is an administrator's enable, pause or disable, which the
// receiver cannot undo.
func (c *Console) ssfStatus(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	status, reason := r.PostFormValue("status"), strings.TrimSpace(r.PostFormValue("reason"))
	if _, err := c.o.SSF.AdminSetStatus(r.Context(), id, status, reason); err != nil {
		return c.ssfRefused(w, r, id, err)
	}
	c.audit(r, "ssf.stream.status", "ssf_stream", id, mdmd.OutcomeSuccess, reason, viaConsole(ssf.AdminStatusAudit(status)))
	http.Redirect(w, r, "/settings/ssf?done=status", http.StatusSeeOther)
	return nil
}

// ssfDelete deletes a stream once its ID is typed back.
func (c *Console) ssfDelete(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if strings.TrimSpace(r.PostFormValue("confirm")) != id {
		return c.ssfRefused(w, r, id, mdmd.FieldError("confirm", "type the stream's ID (%s) to delete it", id))
	}
	if err := c.o.SSF.AdminDelete(r.Context(), id); err != nil {
		return c.ssfRefused(w, r, id, err)
	}
	c.audit(r, "ssf.stream.delete", "ssf_stream", id, mdmd.OutcomeSuccess, "", viaConsole(ssf.AdminDeleteAudit()))
	http.Redirect(w, r, "/settings/ssf?done=delete", http.StatusSeeOther)
	return nil
}
