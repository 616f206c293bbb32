package console

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// GroupData is the storage behind the groups pages (storage.Store).
type GroupData interface {
	CreateGroup(ctx context.Context, g *mdmd.Group) error
	DeleteGroup(ctx context.Context, id string) error
	GetGroup(ctx context.Context, id string) (*mdmd.Group, error)
	AddGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error
	RemoveGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error
	ResolveDeviceRefs(ctx context.Context, refs []string) (map[string][]mdmd.Device, error)
}

// GroupStore is what the groups pages read and change: the storage, and
// the observer told about every change of membership after it is stored.
type GroupStore interface {
	GroupData
	web.MembershipObserver
}

// ObserveGroups returns the groups pages' store: membership changes are
// stored in st (which marks the devices for compliance evaluation) and
// then told to obs, the observer the admin API is given
// (web.APIDeps.Membership, which reconciles profiles), so that the console
// and the API change membership by the same path. obs may be nil.
func ObserveGroups(st GroupData, obs web.MembershipObserver) GroupStore {
	return observedGroups{GroupData: st, obs: obs}
}

type observedGroups struct {
	GroupData
	obs web.MembershipObserver
}

func (g observedGroups) MembershipChanged(ctx context.Context, groupID string, deviceIDs []string) {
	if g.obs != nil {
		g.obs.MembershipChanged(ctx, groupID, deviceIDs)
	}
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
		data.Flash = "Group created. Open it to add devices."
	case "delete":
		data.Flash = "Group deleted."
	}
	return c.groupsPage(w, r, http.StatusOK, data)
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request) error {
	g := &mdmd.Group{Name: strings.TrimSpace(r.PostFormValue("name")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	if err := c.o.Groups.CreateGroup(r.Context(), g); err != nil {
		return refusedForm(r, err, func(status int, data *pageData) error { return c.groupsPage(w, r, status, data) })
	}
	c.audit(r, "group.create", "group", g.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": g.Name, "via": "console"})
	http.Redirect(w, r, "/groups/"+g.ID+"?done=create", http.StatusSeeOther)
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

type groupContent struct {
	Group   *mdmd.Group
	Devices []mdmd.ConsoleDevice
	Total   int64
	Next    string
	Paged   bool
}

// groupPage shows a group and one page of its members.
func (c *Console) groupPage(w http.ResponseWriter, r *http.Request, status int, data *pageData) error {
	g, err := c.o.Groups.GetGroup(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	f := mdmd.ConsoleDeviceFilter{DeviceFilter: mdmd.DeviceFilter{GroupID: g.ID, After: r.URL.Query().Get("cursor"), Limit: pageSize},
		Sort: mdmd.SortEnrolled}
	content := &groupContent{Group: g, Paged: f.After != ""}
	if content.Devices, content.Next, err = c.o.Store.ConsoleListDevices(r.Context(), f); err != nil {
		return err
	}
	if content.Total, err = c.o.Store.ConsoleCountDevices(r.Context(), f); err != nil {
		return err
	}
	data.Title, data.Nav, data.Content = g.Name, "groups", content
	c.render(w, r, status, "group", data)
	return nil
}

func (c *Console) group(w http.ResponseWriter, r *http.Request) error {
	data := &pageData{}
	switch r.URL.Query().Get("done") {
	case "create":
		data.Flash = "Group created. Add devices to it below."
	case "add":
		data.Flash = "Devices added. Their profiles and compliance are being brought up to date."
	case "remove":
		data.Flash = "Device removed from the group."
	}
	return c.groupPage(w, r, http.StatusOK, data)
}

// splitList splits what an administrator typed into a list, one a
// line or comma separated, without blanks or repeats.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// resolveMembers turns references into device IDs. Any reference that
// names no device, or several, refuses the whole list.
func (c *Console) resolveMembers(ctx context.Context, refs []string) ([]string, error) {
	if len(refs) == 0 {
		return nil, mdmd.FieldError("devices", "give at least one serial number, name or device ID")
	}
	if len(refs) > mdmd.MaxPageSize {
		return nil, mdmd.FieldError("devices", "at most %d devices at once, got %d", mdmd.MaxPageSize, len(refs))
	}
	found, err := c.o.Groups.ResolveDeviceRefs(ctx, refs)
	if err != nil {
		return nil, err
	}
	var ids, unknown, ambiguous []string
	for _, ref := range refs {
		switch ds := found[ref]; len(ds) {
		case 0:
			unknown = append(unknown, ref)
		case 1:
			if !slices.Contains(ids, ds[0].ID) {
				ids = append(ids, ds[0].ID)
			}
		default:
			ambiguous = append(ambiguous, ref)
		}
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, "no device has the serial number, name or ID "+quoteList(unknown))
	}
	if len(ambiguous) > 0 {
		problems = append(problems, quoteList(ambiguous)+" names several devices: give their serial numbers or IDs")
	}
	if len(problems) > 0 {
		return nil, mdmd.FieldError("devices", "nothing was added: %s", strings.Join(problems, "; "))
	}
	return ids, nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = "“" + v + "”"
	}
	return strings.Join(q, ", ")
}

// addMembers adds the devices named in the form, all or none.
func (c *Console) addMembers(w http.ResponseWriter, r *http.Request) error {
	g, err := c.o.Groups.GetGroup(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	ids, err := c.resolveMembers(r.Context(), splitList(r.PostFormValue("devices")))
	if err == nil {
		err = c.o.Groups.AddGroupMembers(r.Context(), g.ID, ids)
	}
	if err != nil {
		return refusedForm(r, err, func(status int, data *pageData) error { return c.groupPage(w, r, status, data) })
	}
	c.o.Groups.MembershipChanged(r.Context(), g.ID, ids)
	c.audit(r, "group.members.add", "group", g.ID, mdmd.OutcomeSuccess, "", map[string]any{"device_ids": ids, "via": "console"})
	http.Redirect(w, r, "/groups/"+g.ID+"?done=add", http.StatusSeeOther)
	return nil
}

// removeMember takes one device out of the group.
func (c *Console) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, err := c.o.Groups.GetGroup(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	ids := []string{chi.URLParam(r, "device")}
	if err := c.o.Groups.RemoveGroupMembers(r.Context(), g.ID, ids); err != nil {
		return err
	}
	c.o.Groups.MembershipChanged(r.Context(), g.ID, ids)
	c.audit(r, "group.members.remove", "group", g.ID, mdmd.OutcomeSuccess, "", map[string]any{"device_ids": ids, "via": "console"})
	http.Redirect(w, r, "/groups/"+g.ID+"?done=remove", http.StatusSeeOther)
	return nil
}
