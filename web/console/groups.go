package console

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
)

// GroupStore is what the groups page changes.
type GroupStore interface {
	CreateGroup(ctx context.Context, g *mdmd.Group) error
	DeleteGroup(ctx context.Context, id string) error
}

type groupsContent struct {
	Groups []mdmd.Group
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request, status int, data *pageData) error {
	gs, err := c.o.Store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	data.Title, data.Nav, data.Content = "Groups", "groups", &groupsContent{Groups: gs}
	c.render(w, r, status, "groups", data)
	return nil
}

func (c *Console) groups(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	switch r.URL.Query().Get("done") {
	case "create":
		data.Flash = "Group created. Add devices to it through the API or mdmctl; its devices are listed from here."
	case "delete":
		data.Flash = "Group deleted."
	}
	return c.groupsPage(w, r, http.StatusOK, data)
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request) error {
	g := &mdmd.Group{Name: strings.TrimSpace(r.PostFormValue("name")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	if err := c.o.Groups.CreateGroup(r.Context(), g); err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		form := r.PostForm
		form.Del("csrf")
		return c.groupsPage(w, r, statusOf(err), &pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err), Form: form})
	}
	c.audit(r, "group.create", "group", g.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": g.Name, "via": "console"})
	http.Redirect(w, r, "/groups?done=create", http.StatusSeeOther)
	return nil
}

func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := c.o.Groups.DeleteGroup(r.Context(), id); err != nil {
		return err
	}
	c.audit(r, "group.delete", "group", id, mdmd.OutcomeSuccess, "", map[string]any{"via": "console"})
	http.Redirect(w, r, "/groups?done=delete", http.StatusSeeOther)
	return nil
}
