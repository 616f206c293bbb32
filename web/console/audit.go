package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mdmd/mdmd"
)

// AuditStore is what the audit viewer reads.
type AuditStore interface {
	ListAudit(ctx context.Context, f mdmd.AuditFilter) ([]mdmd.AuditEvent, int64, error)
}

type auditContent struct {
	Q      url.Values
	Events []mdmd.AuditEvent
	Next   string
	Paged  bool
}

// auditLog shows the audit log, newest first, with filters and pages.
func (c *Console) auditLog(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	content := &auditContent{Q: q}
	data := &pageData{Title: "Audit log", Nav: "audit", Content: content}
	f := mdmd.AuditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")),
		TargetID: strings.TrimSpace(q.Get("target")), Limit: pageSize}
	fail := func(field, msg string) error {
		data.Error, data.Field = msg, field
		c.render(w, r, http.StatusBadRequest, "audit", data)
		return nil
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return fail("since", "Since must be a date like 2026-11-01.")
		}
		f.Since = t
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fail("before", "That page link is not valid; start from the newest entries.")
		}
		f.Before, content.Paged = n, true
	}
	events, next, err := c.o.Audit.ListAudit(r.Context(), f)
	if err != nil {
		if mdmd.IsCode(err, mdmd.EInvalid) {
			return fail(fieldOf(err), mdmd.ErrorMessage(err))
		}
		return err
	}
	content.Events = events
	if next > 0 {
		content.Next = strconv.FormatInt(next, 10)
	}
	c.render(w, r, http.StatusOK, "audit", data)
	return nil
}
