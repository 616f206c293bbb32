package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
)

// The stores the API reads and writes, each as small as its handlers need.
type (
	DeviceStore interface {
		GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
		ListDevices(ctx context.Context, f mdmd.DeviceFilter) ([]mdmd.Device, string, error)
		UpdateDevice(ctx context.Context, id string, u mdmd.DeviceUpdate) (*mdmd.Device, error)
		DeleteDevice(ctx context.Context, id string) error
		DeviceGroups(ctx context.Context, deviceID string) ([]mdmd.Group, error)
		GetPosture(ctx context.Context, deviceID string) (*mdmd.Posture, error)
	}
	GroupStore interface {
		CreateGroup(ctx context.Context, g *mdmd.Group) error
		GetGroup(ctx context.Context, id string) (*mdmd.Group, error)
		ListGroups(ctx context.Context) ([]mdmd.Group, error)
		UpdateGroup(ctx context.Context, id string, name, description *string) (*mdmd.Group, error)
		DeleteGroup(ctx context.Context, id string) error
		AddGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error
		RemoveGroupMembers(ctx context.Context, groupID string, deviceIDs []string) error
	}
	CommandStore interface {
		GetCommand(ctx context.Context, id string) (*mdmd.Command, error)
		ListCommands(ctx context.Context, f mdmd.CommandFilter) ([]mdmd.Command, string, error)
		CancelCommand(ctx context.Context, id string) (*mdmd.Command, error)
	}
	TokenStore interface {
		auth.TokenStore
		TouchAPIToken(ctx context.Context, id string, at time.Time) error
		CreateAPIToken(ctx context.Context, t *mdmd.APIToken) error
		ListAPITokens(ctx context.Context) ([]mdmd.APIToken, error)
		RevokeAPIToken(ctx context.Context, id string) (*mdmd.APIToken, error)
	}
	AuditStore interface {
		AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
		ListAudit(ctx context.Context, f mdmd.AuditFilter) ([]mdmd.AuditEvent, int64, error)
	}
)

// APIDeps are what the admin API is built from.
type APIDeps struct {
	Devices  DeviceStore
	Groups   GroupStore
	Commands CommandStore
	Tokens   TokenStore
	Audit    AuditStore
	Logger   *slog.Logger
	Now      func() time.Time
	// Modules add the admin routes of other domains (enrollment, Apple, …).
	Modules []Module
	// Membership hears about devices joining or leaving groups.
	Membership MembershipObserver
	// Version and PublicURL describe the API in its OpenAPI document.
	Version, PublicURL string
}

// MembershipObserver is told when group membership changes.
type MembershipObserver interface {
	MembershipChanged(ctx context.Context, groupID string, deviceIDs []string)
}

// HandlerFunc is an admin route's handler; a returned error is written
// as JSON with its status.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Registrar is how a Module adds admin routes: each with its permission,
// checked in the one place every admin route shares.
type Registrar interface {
	// Handle adds a route that takes no request body.
	Handle(method, pattern string, perm mdmd.Permission, h HandlerFunc)
	// HandleJSON adds a route that takes a JSON object.
	HandleJSON(method, pattern string, perm mdmd.Permission, h HandlerFunc)
	// Audit appends an admin action to the audit log.
	Audit(r *http.Request, action, targetType, targetID, outcome, reason string, details any)
}

// Module is a domain's set of admin routes under /api/v1.
type Module interface {
	RegisterAPI(reg Registrar)
}

type registrar struct {
	a *API
	r chi.Router
}

func (g registrar) Handle(method, pattern string, perm mdmd.Permission, h HandlerFunc) {
	g.a.route(g.r, method, pattern, perm, false, handlerFunc(h))
}

func (g registrar) HandleJSON(method, pattern string, perm mdmd.Permission, h HandlerFunc) {
	g.a.route(g.r, method, pattern, perm, true, handlerFunc(h))
}

func (g registrar) Audit(r *http.Request, action, targetType, targetID, outcome, reason string, details any) {
	g.a.audit(r, action, targetType, targetID, outcome, reason, details)
}

// DecodeJSON reads exactly one JSON object from the request into v.
func DecodeJSON(r *http.Request, v any) error { return decodeJSON(r, v) }

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// Route describes one admin API route and the permission it requires.
type Route struct {
	Method     string
	Pattern    string
	Permission mdmd.Permission
	// Body reports whether the route takes a JSON request body.
	Body bool
}

// API is the admin JSON API under /api/v1. Every route authenticates the
// caller with a bearer token and checks the route's permission in one place
// (handle), so no route can forget either.
type API struct {
	d      APIDeps
	log    *slog.Logger
	router chi.Router
	routes []Route
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// NewAPI builds the admin API.
func NewAPI(d APIDeps) *API {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{d: d, log: d.Logger, router: chi.NewRouter()}
	a.router.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, a.log, mdmd.Errorf(mdmd.ENotFound, "no such route: %s %s", r.Method, r.URL.Path))
	})
	a.router.MethodNotAllowed(methodNotAllowed(a.log))
	// Mounted at /api by the application router.
	a.router.Get("/openapi.json", a.ServeOpenAPI(d.Version, d.PublicURL))
	a.router.Route("/v1", func(r chi.Router) {
		r.Use(a.authenticate)
		a.handle(r, "GET", "/me", "", a.me)

		a.handle(r, "GET", "/devices", mdmd.PermDevicesRead, a.listDevices)
		a.handle(r, "GET", "/devices/{id}", mdmd.PermDevicesRead, a.getDevice)
		a.handleJSON(r, "PATCH", "/devices/{id}", mdmd.PermDevicesWrite, a.updateDevice)
		a.handle(r, "DELETE", "/devices/{id}", mdmd.PermDevicesDelete, a.deleteDevice)
		a.handle(r, "GET", "/devices/{id}/commands", mdmd.PermCommandsRead, a.listDeviceCommands)

		a.handle(r, "GET", "/commands/{id}", mdmd.PermCommandsRead, a.getCommand)
		a.handle(r, "POST", "/commands/{id}/cancel", mdmd.PermDevicesWrite, a.cancelCommand)

		a.handle(r, "GET", "/groups", mdmd.PermDevicesRead, a.listGroups)
		a.handleJSON(r, "POST", "/groups", mdmd.PermGroupsWrite, a.createGroup)
		a.handle(r, "GET", "/groups/{id}", mdmd.PermDevicesRead, a.getGroup)
		a.handleJSON(r, "PATCH", "/groups/{id}", mdmd.PermGroupsWrite, a.updateGroup)
		a.handle(r, "DELETE", "/groups/{id}", mdmd.PermGroupsWrite, a.deleteGroup)
		a.handleJSON(r, "POST", "/groups/{id}/members", mdmd.PermGroupsWrite, a.addMembers)
		a.handleJSON(r, "DELETE", "/groups/{id}/members", mdmd.PermGroupsWrite, a.removeMembers)

		a.handle(r, "GET", "/tokens", mdmd.PermTokensManage, a.listTokens)
		a.handleJSON(r, "POST", "/tokens", mdmd.PermTokensManage, a.createToken)
		a.handle(r, "DELETE", "/tokens/{id}", mdmd.PermTokensManage, a.revokeToken)

		a.handle(r, "GET", "/audit", mdmd.PermAuditRead, a.listAudit)

		for _, m := range d.Modules {
			m.RegisterAPI(registrar{a: a, r: r})
		}
	})
	return a
}

// Routes lists every route with its permission ("" means any authenticated caller).
func (a *API) Routes() []Route { return append([]Route(nil), a.routes...) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// handle registers a route that takes no request body; handleJSON one
// that takes a JSON object.
func (a *API) handle(r chi.Router, method, pattern string, perm mdmd.Permission, h handlerFunc) {
	a.route(r, method, pattern, perm, false, h)
}

func (a *API) handleJSON(r chi.Router, method, pattern string, perm mdmd.Permission, h handlerFunc) {
	a.route(r, method, pattern, perm, true, h)
}

// route is where every admin request is checked, in this order: the
// caller's permission, then (for routes without a body) that no body was
// sent, then the handler. A successful request records the token's use.
func (a *API) route(r chi.Router, method, pattern string, perm mdmd.Permission, takesBody bool, h handlerFunc) {
	a.routes = append(a.routes, Route{Method: method, Pattern: "/api/v1" + pattern, Permission: perm, Body: takesBody})
	r.MethodFunc(method, pattern, func(w http.ResponseWriter, req *http.Request) {
		p := PrincipalFrom(req.Context())
		if perm != "" && !p.Role.Can(perm) {
			a.audit(req, "access.denied", "route", method+" /api/v1"+pattern, mdmd.OutcomeDenied, "", nil)
			WriteError(w, req, a.log, mdmd.Errorf(mdmd.EForbidden, "role %s lacks permission %s", p.Role, perm))
			return
		}
		if !takesBody {
			if err := requireNoBody(req); err != nil {
				WriteError(w, req, a.log, err)
				return
			}
		}
		if err := h(w, req); err != nil {
			WriteError(w, req, a.log, err)
			return
		}
		if p.Type == mdmd.ActorToken {
			// Best effort, and throttled by the store to one write a minute.
			if err := a.d.Tokens.TouchAPIToken(req.Context(), p.ID, a.d.Now()); err != nil {
				a.log.Warn("recording token use failed", "err", err)
			}
		}
	})
}

// requireNoBody rejects a request body on a route that takes none, so that
// a malformed or oversized body is never silently ignored.
func requireNoBody(r *http.Request) error {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	var one [1]byte
	n, err := r.Body.Read(one[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return nil
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return mdmd.Errorf(mdmd.ETooLarge, "request body exceeds %d bytes", tooBig.Limit)
	}
	return mdmd.Errorf(mdmd.EInvalid, "%s %s takes no request body", r.Method, r.URL.Path)
}

func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		scheme, secret, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			WriteError(w, r, a.log, mdmd.Errorf(mdmd.EUnauthenticated, "an Authorization: Bearer token is required"))
			return
		}
		p, err := auth.AuthenticateToken(r.Context(), a.d.Tokens, strings.TrimSpace(secret), a.d.Now())
		if err != nil {
			WriteError(w, r, a.log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// audit records an admin action. A failure to record is logged: the
// action itself has already happened and is not undone.
func (a *API) audit(r *http.Request, action, targetType, targetID, outcome, reason string, details any) {
	p := PrincipalFrom(r.Context())
	e := &mdmd.AuditEvent{ActorType: p.Type, Actor: p.Name + " (" + p.ID + ")", Action: action,
		TargetType: targetType, TargetID: targetID, Outcome: outcome, Reason: reason, RequestID: RequestID(r.Context())}
	if details != nil {
		e.Details, _ = json.Marshal(details)
	}
	if err := a.d.Audit.AppendAudit(r.Context(), e); err != nil {
		a.log.Error("audit append failed", "err", err, "action", action, "request_id", e.RequestID)
	}
}

// Page is the envelope of every listing.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func page[T any](items []T, next string) Page[T] {
	if items == nil {
		items = []T{}
	}
	return Page[T]{Items: items, NextCursor: next}
}

// QueryLimit reads a listing's limit query parameter (0 when absent).
func QueryLimit(r *http.Request) (int, error) { return queryLimit(r) }

func queryLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > mdmd.MaxPageSize {
		return 0, mdmd.FieldError("limit", "must be an integer from 1 to %d", mdmd.MaxPageSize)
	}
	return n, nil
}

func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	var perms []mdmd.Permission
	for _, rt := range a.routes {
		if rt.Permission != "" && p.Role.Can(rt.Permission) && !containsPerm(perms, rt.Permission) {
			perms = append(perms, rt.Permission)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"type": p.Type, "id": p.ID, "name": p.Name, "role": p.Role, "permissions": perms})
	return nil
}

func containsPerm(ps []mdmd.Permission, p mdmd.Permission) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// DeviceView is a device with its groups and its latest posture.
type DeviceView struct {
	mdmd.Device
	Groups  []mdmd.Group  `json:"groups"`
	Posture *mdmd.Posture `json:"posture,omitempty"`
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	f := mdmd.DeviceFilter{
		Platform: mdmd.Platform(q.Get("platform")), EnrollmentState: mdmd.EnrollmentState(q.Get("state")),
		Ownership: mdmd.Ownership(q.Get("ownership")), OwnerUser: q.Get("owner"), GroupID: q.Get("group"),
		Query: q.Get("q"), After: q.Get("cursor"), Limit: limit,
	}
	devs, next, err := a.d.Devices.ListDevices(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page(devs, next))
	return nil
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := a.d.Devices.GetDevice(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	groups, err := a.d.Devices.DeviceGroups(r.Context(), d.ID)
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []mdmd.Group{}
	}
	view := DeviceView{Device: *d, Groups: groups}
	if p, err := a.d.Devices.GetPosture(r.Context(), d.ID); err == nil {
		view.Posture = p
	} else if !mdmd.IsCode(err, mdmd.ENotFound) {
		return err
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (a *API) updateDevice(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name      *string         `json:"name"`
		OwnerUser *string         `json:"owner_user"`
		Ownership *mdmd.Ownership `json:"ownership"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	d, err := a.d.Devices.UpdateDevice(r.Context(), id, mdmd.DeviceUpdate{Name: in.Name, OwnerUser: in.OwnerUser, Ownership: in.Ownership})
	if err != nil {
		return err
	}
	a.audit(r, "device.update", "device", id, mdmd.OutcomeSuccess, "", in)
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	d, err := a.d.Devices.GetDevice(r.Context(), id)
	if err != nil {
		return err
	}
	if err := a.d.Devices.DeleteDevice(r.Context(), id); err != nil {
		return err
	}
	a.audit(r, "device.delete", "device", id, mdmd.OutcomeSuccess, "", map[string]string{"name": d.Name, "serial_number": d.SerialNumber})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listDeviceCommands(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, err := a.d.Devices.GetDevice(r.Context(), id); err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	cmds, next, err := a.d.Commands.ListCommands(r.Context(), mdmd.CommandFilter{DeviceID: id,
		Status: mdmd.CommandStatus(r.URL.Query().Get("status")), After: r.URL.Query().Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page(cmds, next))
	return nil
}

func (a *API) getCommand(w http.ResponseWriter, r *http.Request) error {
	c, err := a.d.Commands.GetCommand(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) cancelCommand(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	c, err := a.d.Commands.CancelCommand(r.Context(), id)
	if err != nil {
		return err
	}
	a.audit(r, "command.cancel", "command", id, mdmd.OutcomeSuccess, "", map[string]string{"device_id": c.DeviceID, "request_type": c.RequestType})
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.d.Groups.ListGroups(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page(gs, ""))
	return nil
}

type groupInput struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) error {
	var in groupInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	g := &mdmd.Group{}
	if in.Name != nil {
		g.Name = *in.Name
	}
	if in.Description != nil {
		g.Description = *in.Description
	}
	if err := a.d.Groups.CreateGroup(r.Context(), g); err != nil {
		return err
	}
	a.audit(r, "group.create", "group", g.ID, mdmd.OutcomeSuccess, "", in)
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.d.Groups.GetGroup(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) updateGroup(w http.ResponseWriter, r *http.Request) error {
	var in groupInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	g, err := a.d.Groups.UpdateGroup(r.Context(), id, in.Name, in.Description)
	if err != nil {
		return err
	}
	a.audit(r, "group.update", "group", id, mdmd.OutcomeSuccess, "", in)
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := a.d.Groups.DeleteGroup(r.Context(), id); err != nil {
		return err
	}
	a.audit(r, "group.delete", "group", id, mdmd.OutcomeSuccess, "", nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type membersInput struct {
	DeviceIDs []string `json:"device_ids"`
}

func (a *API) members(r *http.Request) (string, []string, error) {
	var in membersInput
	if err := decodeJSON(r, &in); err != nil {
		return "", nil, err
	}
	if len(in.DeviceIDs) == 0 || len(in.DeviceIDs) > mdmd.MaxPageSize {
		return "", nil, mdmd.FieldError("device_ids", "between 1 and %d device IDs", mdmd.MaxPageSize)
	}
	id := chi.URLParam(r, "id")
	if _, err := a.d.Groups.GetGroup(r.Context(), id); err != nil {
		return "", nil, err
	}
	return id, in.DeviceIDs, nil
}

func (a *API) addMembers(w http.ResponseWriter, r *http.Request) error {
	id, ids, err := a.members(r)
	if err != nil {
		return err
	}
	if err := a.d.Groups.AddGroupMembers(r.Context(), id, ids); err != nil {
		return err
	}
	if a.d.Membership != nil {
		a.d.Membership.MembershipChanged(r.Context(), id, ids)
	}
	a.audit(r, "group.members.add", "group", id, mdmd.OutcomeSuccess, "", map[string]any{"device_ids": ids})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) removeMembers(w http.ResponseWriter, r *http.Request) error {
	id, ids, err := a.members(r)
	if err != nil {
		return err
	}
	if err := a.d.Groups.RemoveGroupMembers(r.Context(), id, ids); err != nil {
		return err
	}
	if a.d.Membership != nil {
		a.d.Membership.MembershipChanged(r.Context(), id, ids)
	}
	a.audit(r, "group.members.remove", "group", id, mdmd.OutcomeSuccess, "", map[string]any{"device_ids": ids})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.d.Tokens.ListAPITokens(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page(ts, ""))
	return nil
}

// MaxTokenDays bounds a token's lifetime: every credential expires.
const MaxTokenDays = auth.MaxTokenDays

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name          string    `json:"name"`
		Role          mdmd.Role `json:"role"`
		Audience      string    `json:"audience"`
		ExpiresInDays int       `json:"expires_in_days"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	t, secret, err := auth.IssueToken(r.Context(), a.d.Tokens, PrincipalFrom(r.Context()),
		auth.TokenRequest{Name: in.Name, Role: in.Role, Audience: in.Audience, Days: in.ExpiresInDays}, a.d.Now())
	if err != nil {
		return err
	}
	a.audit(r, "token.create", "token", t.ID, mdmd.OutcomeSuccess, "", map[string]any{"name": t.Name, "role": t.Role, "audience": t.Audience, "expires_at": t.ExpiresAt})
	writeJSON(w, http.StatusCreated, struct {
		Token  *mdmd.APIToken `json:"token"`
		Secret string         `json:"secret"`
	}{t, secret})
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	t, err := a.d.Tokens.RevokeAPIToken(r.Context(), id)
	if err != nil {
		return err
	}
	a.audit(r, "token.revoke", "token", id, mdmd.OutcomeSuccess, "", map[string]any{"name": t.Name})
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	f := mdmd.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), TargetID: q.Get("target"), Limit: limit}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if s := q.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return mdmd.FieldError(name, "must be an RFC 3339 time")
			}
			*dst = t
		}
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return mdmd.FieldError("cursor", "must be a positive integer")
		}
		f.Before = n
	}
	evs, next, err := a.d.Audit.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	cursor := ""
	if next > 0 {
		cursor = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, page(evs, cursor))
	return nil
}
