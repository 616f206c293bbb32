package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/bulk"
)

// BulkActions is the bulk action service (package bulk).
type BulkActions interface {
	Create(ctx context.Context, by *mdmd.Principal, req bulk.Request) (*mdmd.BulkAction, error)
	Get(ctx context.Context, id string) (*bulk.Status, error)
	List(ctx context.Context, limit int) ([]mdmd.BulkAction, error)
	Targets(ctx context.Context, id, state, after string, limit int) ([]mdmd.BulkTarget, string, error)
	Cancel(ctx context.Context, by *mdmd.Principal, id, reason string) (*mdmd.BulkAction, error)
}

// registerBulk adds bulk actions on the device list's filter: a page that
// offers them for a filter, one form per action (each with the permission
// its single-device form needs), and the actions' progress.
func (c *Console) registerBulk(r chi.Router) {
	if c.o.Bulk == nil {
		return
	}
	c.handle(r, "GET", "/bulk", mdmd.PermCommandsRead, c.bulkList)
	c.handle(r, "GET", "/bulk/new", mdmd.PermCommandsRead, c.bulkNew)
	c.handle(r, "POST", "/bulk/query", mdmd.PermCommandsQuery, c.bulkCreate(mdmd.BulkQuery))
	c.handle(r, "POST", "/bulk/lock", mdmd.PermCommandsLock, c.bulkCreate(mdmd.BulkLock))
	c.handle(r, "POST", "/bulk/wipe", mdmd.PermCommandsWipe, c.bulkCreate("wipe"))
	c.handle(r, "GET", "/bulk/{id}", mdmd.PermCommandsRead, c.bulkShow)
	// The service also checks the permission of the action's kind.
	c.handle(r, "POST", "/bulk/{id}/cancel", mdmd.PermCommandsQuery, c.bulkCancel)
}

// bulkFilterFrom reads the device list's filter fields.
func bulkFilterFrom(v url.Values) mdmd.BulkFilter {
	return mdmd.BulkFilter{Query: strings.TrimSpace(v.Get("q")), Platform: mdmd.Platform(v.Get("platform")),
		Ownership: mdmd.Ownership(v.Get("ownership")), OwnerUser: strings.TrimSpace(v.Get("owner")),
		GroupID: v.Get("group"), ComplianceState: v.Get("compliance")}
}

// bulkFilterQuery is the device list query string of a bulk filter.
func bulkFilterQuery(f mdmd.BulkFilter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"q": f.Query, "platform": string(f.Platform), "ownership": string(f.Ownership),
		"owner": f.OwnerUser, "group": f.GroupID, "compliance": f.ComplianceState} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

type bulkNewContent struct {
	Filter mdmd.BulkFilter
	Query  url.Values // the filter, for the forms' hidden fields and the way back
	Desc   string
	Count  int64
	// Action is the form that failed, so its error shows next to it.
	Action string
}

func (c *Console) groupName(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	_, names, _ := c.groupNames(ctx) // a name missing from the page is not worth an error
	return names[id]
}

func (c *Console) bulkNewPage(w http.ResponseWriter, r *http.Request, f mdmd.BulkFilter, status int, data *pageData, action string) error {
	content := &bulkNewContent{Filter: f, Query: bulkFilterQuery(f), Desc: f.Describe(c.groupName(r.Context(), f.GroupID)), Action: action}
	cf := f.Console()
	if err := cf.Validate(); err != nil {
		return err
	}
	n, err := c.o.Store.ConsoleCountDevices(r.Context(), cf)
	if err != nil {
		return err
	}
	content.Count = n
	data.Title, data.Nav, data.Content = "Bulk action", "devices", content
	c.render(w, r, status, "bulk_new", data)
	return nil
}

func (c *Console) bulkNew(w http.ResponseWriter, r *http.Request) error {
	return c.bulkNewPage(w, r, bulkFilterFrom(r.URL.Query()), http.StatusOK, &pageData{}, "")
}

func (c *Console) bulkCreate(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		f := bulkFilterFrom(r.PostForm)
		action := kind
		if kind == "wipe" {
			switch r.PostFormValue("mode") {
			case "selective":
				action = mdmd.BulkWipeSelective
			case "full":
				action = mdmd.BulkWipeFull
			default:
				action = ""
			}
		}
		req := bulk.Request{Action: action, Filter: f, Reason: strings.TrimSpace(r.PostFormValue("reason")),
			Confirm: strings.TrimSpace(r.PostFormValue("confirm")),
			Params:  mdmd.BulkParams{Message: strings.TrimSpace(r.PostFormValue("message")), PhoneNumber: strings.TrimSpace(r.PostFormValue("phone"))}}
		if kind == "wipe" && action == "" {
			return c.bulkFailed(w, r, f, kind, mdmd.FieldError("mode", "choose a selective or a full wipe"))
		}
		b, err := c.o.Bulk.Create(r.Context(), stateFrom(r.Context()).principal, req)
		if err != nil {
			return c.bulkFailed(w, r, f, kind, err)
		}
		http.Redirect(w, r, "/bulk/"+b.ID+"?done=create", http.StatusSeeOther)
		return nil
	}
}

// bulkFailed shows the bulk page again with the error next to the form
// that failed; an internal error is a plain error page.
func (c *Console) bulkFailed(w http.ResponseWriter, r *http.Request, f mdmd.BulkFilter, kind string, err error) error {
	if statusOf(err) == http.StatusForbidden {
		return err
	}
	return refusedForm(r, err, func(status int, data *pageData) error { return c.bulkNewPage(w, r, f, status, data, kind) })
}

type bulkShowContent struct {
	*bulk.Status
	Desc        string
	Targets     []mdmd.BulkTarget
	Next        string
	TargetState string // the target state listed ("" for all)
	Paged       bool
	Live        bool
	CanCancel   bool
}

// Handled is how many devices were sent, failed or skipped.
func (b *bulkShowContent) Handled() int { return b.Progress.Total - b.Progress.Pending }

func (c *Console) bulkShow(w http.ResponseWriter, r *http.Request) error {
	return c.bulkPage(w, r, http.StatusOK, &pageData{})
}

func (c *Console) bulkCancel(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, err := c.o.Bulk.Cancel(r.Context(), stateFrom(r.Context()).principal, id, strings.TrimSpace(r.PostFormValue("reason"))); err != nil {
		if s := statusOf(err); s == http.StatusBadRequest || s == http.StatusConflict {
			return c.bulkPage(w, r, s, refusedData(r, err))
		}
		return err
	}
	http.Redirect(w, r, "/bulk/"+id+"?done=cancel", http.StatusSeeOther)
	return nil
}

func (c *Console) bulkPage(w http.ResponseWriter, r *http.Request, status int, data *pageData) error {
	id := chi.URLParam(r, "id")
	p := stateFrom(r.Context()).principal
	full, err := c.o.Bulk.Get(r.Context(), id)
	if err != nil {
		return err
	}
	st := full.For(p.Role)
	q := r.URL.Query()
	content := &bulkShowContent{Status: st, Desc: st.Filter.Describe(c.groupName(r.Context(), st.Filter.GroupID)),
		TargetState: q.Get("state"), Paged: q.Get("cursor") != ""}
	if content.Targets, content.Next, err = c.o.Bulk.Targets(r.Context(), id, content.TargetState, q.Get("cursor"), 50); err != nil {
		return err
	}
	// Only a running action changes by itself; one waiting for approval
	// does not, so its page is not reloaded.
	content.Live = st.State == mdmd.BulkRunning
	content.CanCancel = (st.State == mdmd.BulkRunning || st.State == mdmd.BulkAwaitingApproval) &&
		p.Role.Can(mdmd.BulkActionPermission(st.Action))
	data.Title, data.Nav, data.Content = "Bulk action", "devices", content
	if content.Live {
		data.Refresh = 10
	}
	switch q.Get("done") {
	case "create":
		data.Flash = "Bulk action created: it is being sent to the devices."
		if st.State == mdmd.BulkAwaitingApproval {
			data.Flash = "Bulk wipe requested: nothing is sent until a second administrator approves it."
		}
	case "cancel":
		data.Flash = "Bulk action cancelled: devices not yet sent get nothing."
	}
	c.render(w, r, status, "bulk", data)
	return nil
}

func (c *Console) bulkList(w http.ResponseWriter, r *http.Request) error {
	items, err := c.o.Bulk.List(r.Context(), 100)
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "bulk_list", &pageData{Title: "Bulk actions", Nav: "devices", Content: items})
	return nil
}
