package ssf

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/web"
)

// RegisterAPI adds the stream management API (SSF §8) and the poll
// endpoint (RFC 8936) under /api/v1, for callers with PermSSFStreams,
// and an administrator's view of every stream (PermSettingsManage).
func (t *Transmitter) RegisterAPI(reg web.Registrar) {
	perm := mdmd.PermSSFStreams
	reg.Handle("GET", StreamsPath, perm, t.readStreams)
	reg.HandleJSON("POST", StreamsPath, perm, func(w http.ResponseWriter, r *http.Request) error { return t.createStream(reg, w, r) })
	reg.HandleJSON("PATCH", StreamsPath, perm, func(w http.ResponseWriter, r *http.Request) error {
		return t.changeStream(reg, w, r, modeUpdate)
	})
	reg.HandleJSON("PUT", StreamsPath, perm, func(w http.ResponseWriter, r *http.Request) error {
		return t.changeStream(reg, w, r, modeReplace)
	})
	reg.Handle("DELETE", StreamsPath, perm, func(w http.ResponseWriter, r *http.Request) error {
		id := r.URL.Query().Get("stream_id")
		if id == "" {
			return mdmd.FieldError("stream_id", "required")
		}
		if err := t.st.DeleteSSFStream(r.Context(), owner(r), id); err != nil {
			return err
		}
		reg.Audit(r, "ssf.stream.delete", "ssf_stream", id, mdmd.OutcomeSuccess, "", nil)
		noContent(w)
		return nil
	})
	reg.Handle("GET", StatusPath, perm, t.readStatus)
	reg.HandleJSON("POST", StatusPath, perm, func(w http.ResponseWriter, r *http.Request) error { return t.updateStatus(reg, w, r) })
	reg.HandleJSON("POST", AddSubjectPath, perm, func(w http.ResponseWriter, r *http.Request) error { return t.changeSubject(reg, w, r, true) })
	reg.HandleJSON("POST", RemoveSubjectPath, perm, func(w http.ResponseWriter, r *http.Request) error {
		return t.changeSubject(reg, w, r, false)
	})
	reg.HandleJSON("POST", VerifyPath, perm, t.verify)
	reg.HandleJSON("POST", PollPath, perm, t.poll)

	// Administrators see every receiver's streams and may pause or disable
	// one; the receiver hears of it through a stream-updated event.
	reg.Handle("GET", "/ssf/admin/streams", mdmd.PermSettingsManage, t.adminList)
	reg.HandleJSON("POST", "/ssf/admin/streams/{id}/status", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		return t.adminStatus(reg, w, r)
	})
	// A stream outlives its token; an administrator removes the streams
	// of a receiver whose token was revoked.
	reg.Handle("DELETE", "/ssf/admin/streams/{id}", mdmd.PermSettingsManage, func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if err := t.AdminDelete(r.Context(), id); err != nil {
			return err
		}
		reg.Audit(r, "ssf.stream.delete", "ssf_stream", id, mdmd.OutcomeSuccess, "", AdminDeleteAudit())
		noContent(w)
		return nil
	})
}

func owner(r *http.Request) string {
	if p := web.PrincipalFrom(r.Context()); p != nil {
		return p.ID
	}
	return "\x00nobody"
}

func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (t *Transmitter) readStreams(w http.ResponseWriter, r *http.Request) error {
	if id := r.URL.Query().Get("stream_id"); id != "" {
		st, err := t.st.GetSSFStream(r.Context(), owner(r), id)
		if err != nil {
			return err
		}
		c, err := t.config(st)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, c)
		return nil
	}
	streams, err := t.st.ListSSFStreams(r.Context(), owner(r))
	if err != nil {
		return err
	}
	out := []StreamConfig{}
	for i := range streams {
		c, err := t.config(&streams[i])
		if err != nil {
			return err
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (t *Transmitter) createStream(reg web.Registrar, w http.ResponseWriter, r *http.Request) error {
	m, err := members(r)
	if err != nil {
		return err
	}
	p := web.PrincipalFrom(r.Context())
	st := &mdmd.SSFStream{ID: randHex(16), OwnerID: owner(r), Status: mdmd.SSFStatusEnabled}
	if p != nil {
		st.OwnerName = p.Name
	}
	// The stream's audience: the one an administrator set on the
	// receiver's token, else the receiver as this transmitter knows it,
	// its token. A request may repeat it, not choose another (apply).
	aud := "urn:mdmd:ssf:receiver:" + st.OwnerID
	if p != nil && p.Audience != "" {
		aud = p.Audience
	}
	st.Aud, _ = json.Marshal(aud)
	if _, err := t.apply(st, m, modeCreate); err != nil {
		return err
	}
	if err := t.st.CreateSSFStream(r.Context(), st, t.opt.MaxStreamsPerReceiver); err != nil {
		return err
	}
	c, err := t.config(st)
	if err != nil {
		return err
	}
	reg.Audit(r, "ssf.stream.create", "ssf_stream", st.ID, mdmd.OutcomeSuccess, "", map[string]any{
		"delivery": st.DeliveryMethod, "endpoint_url": redactURL(st.EndpointURL), "events": c.EventsDelivered})
	writeJSON(w, http.StatusCreated, c)
	return nil
}

func (t *Transmitter) changeStream(reg web.Registrar, w http.ResponseWriter, r *http.Request, mode configMode) error {
	m, id, err := streamRequest(r)
	if err != nil {
		return err
	}
	st, err := t.st.GetSSFStream(r.Context(), owner(r), id)
	if err != nil {
		return err
	}
	clear, err := t.apply(st, m, mode)
	if err != nil {
		return err
	}
	if err := t.st.UpdateSSFStream(r.Context(), st, clear); err != nil {
		return err
	}
	c, err := t.config(st)
	if err != nil {
		return err
	}
	action := "ssf.stream.update"
	if mode == modeReplace {
		action = "ssf.stream.replace"
	}
	reg.Audit(r, action, "ssf_stream", st.ID, mdmd.OutcomeSuccess, "", map[string]any{
		"delivery": st.DeliveryMethod, "endpoint_url": redactURL(st.EndpointURL), "events": c.EventsDelivered})
	t.Wake()
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (t *Transmitter) readStatus(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		return mdmd.FieldError("stream_id", "required")
	}
	st, err := t.st.GetSSFStream(r.Context(), owner(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, StreamStatus{StreamID: st.ID, Status: st.Status, Reason: st.StatusReason})
	return nil
}

func statusInput(r *http.Request) (id, status, reason string, err error) {
	m, id, err := streamRequest(r)
	if err != nil {
		return "", "", "", err
	}
	status, ok, err := str(m, "status")
	if err == nil && !ok {
		err = mdmd.FieldError("status", "required")
	}
	if err != nil {
		return "", "", "", err
	}
	reason, _, err = str(m, "reason")
	return id, status, reason, err
}

// updateStatus is a receiver changing its own stream's status: no
// stream-updated event (SSF sends one when the transmitter decides).
// While an administrator's pause or disable is in force it is 403.
func (t *Transmitter) updateStatus(reg web.Registrar, w http.ResponseWriter, r *http.Request) error {
	id, status, reason, err := statusInput(r)
	if err != nil {
		return err
	}
	st, err := t.st.SetSSFStreamStatus(r.Context(), owner(r), id, status, reason, mdmd.SSFStatusByReceiver, nil)
	if err != nil {
		return err
	}
	reg.Audit(r, "ssf.stream.status", "ssf_stream", id, mdmd.OutcomeSuccess, reason, map[string]string{"status": status})
	t.Wake()
	writeJSON(w, http.StatusOK, StreamStatus{StreamID: st.ID, Status: st.Status, Reason: st.StatusReason})
	return nil
}

func (t *Transmitter) changeSubject(reg web.Registrar, w http.ResponseWriter, r *http.Request, add bool) error {
	m, id, err := streamRequest(r)
	if err != nil {
		return err
	}
	raw, ok := m["subject"]
	if !ok || isNull(raw) {
		return mdmd.FieldError("subject", "required")
	}
	if v, ok := m["verified"]; ok && !isNull(v) {
		var b bool
		if json.Unmarshal(v, &b) != nil {
			return mdmd.FieldError("verified", "must be a boolean")
		}
	}
	device, user, err := t.subjectKeys(raw)
	if err != nil {
		return err
	}
	compact, _ := json.Marshal(json.RawMessage(raw))
	sub := &mdmd.SSFSubject{StreamID: id, DeviceKey: device, UserKey: user, Subject: compact}
	action := "ssf.subject.add"
	if add {
		err = t.st.AddSSFSubject(r.Context(), owner(r), sub, t.opt.MaxSubjectsPerStream)
	} else {
		action = "ssf.subject.remove"
		err = t.st.RemoveSSFSubject(r.Context(), owner(r), sub, t.opt.MaxSubjectsPerStream)
	}
	if err != nil {
		return err
	}
	reg.Audit(r, action, "ssf_stream", id, mdmd.OutcomeSuccess, "", map[string]string{"device": device, "user": user})
	if add {
		// SSF §8.1.3.2: an empty 200.
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	noContent(w)
	return nil
}

func (t *Transmitter) verify(w http.ResponseWriter, r *http.Request) error {
	m, id, err := streamRequest(r)
	if err != nil {
		return err
	}
	state, _, err := str(m, "state")
	if err != nil {
		return err
	}
	if len(state) > 1000 {
		return mdmd.FieldError("state", "at most 1000 characters")
	}
	st, err := t.st.GetSSFStream(r.Context(), owner(r), id)
	if err != nil {
		return err
	}
	if st.Status == mdmd.SSFStatusDisabled {
		return mdmd.Errorf(mdmd.EInvalid, "stream %s is disabled: enable it to verify it", id)
	}
	event := map[string]string{}
	if state != "" {
		event["state"] = state
	}
	set, err := t.controlSET(st, EventVerification, event)
	if err != nil {
		return err
	}
	// A verification is held like any event while the stream is paused.
	set.Control = false
	if err := t.st.RequestSSFVerification(r.Context(), owner(r), id, t.opt.MinVerificationInterval, set); err != nil {
		if mdmd.IsCode(err, mdmd.ERateLimited) {
			w.Header().Set("Retry-After", strconv.Itoa(int(t.opt.MinVerificationInterval.Seconds())))
		}
		return err
	}
	t.Wake()
	noContent(w)
	return nil
}

// pollRequest is an RFC 8936 §2.2 poll request.
type pollRequest struct {
	MaxEvents         *int                `json:"maxEvents"`
	ReturnImmediately bool                `json:"returnImmediately"`
	Ack               []string            `json:"ack"`
	SetErrs           map[string]setError `json:"setErrs"`
}

type setError struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// pollResponse is an RFC 8936 §2.3 poll response.
type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

func (t *Transmitter) poll(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := chi.URLParam(r, "stream_id")
	st, err := t.st.GetSSFStream(ctx, owner(r), id)
	if err != nil {
		return err
	}
	if st.DeliveryMethod != mdmd.SSFDeliveryPoll {
		return mdmd.Errorf(mdmd.EInvalid, "stream %s uses push delivery", id)
	}
	// All members of a poll request are optional; so, here, is the body.
	m, err := membersOr(r, true)
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(m)
	var in pollRequest
	if err := json.Unmarshal(raw, &in); err != nil {
		return mdmd.Errorf(mdmd.EInvalid, "malformed poll request: %v", err)
	}
	max := t.opt.PollMaxEvents
	if in.MaxEvents != nil {
		if *in.MaxEvents < 0 {
			return mdmd.FieldError("maxEvents", "must not be negative")
		}
		max = min(*in.MaxEvents, t.opt.PollMaxEvents)
	}
	if len(in.Ack) > 10000 || len(in.SetErrs) > 10000 {
		return mdmd.Errorf(mdmd.EInvalid, "at most 10000 acknowledgements and errors per poll")
	}
	acks := slices.DeleteFunc(in.Ack, func(jti string) bool { return jti == "" || len(jti) > maxJTI })
	errs := t.setErrs(id, in.SetErrs)
	// Long poll: ask the database again until a SET is due or the wait
	// ends, so that any replica's fan-out wakes any replica's poll.
	deadline := time.Now().Add(t.opt.PollMaxWait)
	var sets []mdmd.SSFSet
	var more bool
	for {
		sets, more, err = t.st.PollSSFSets(ctx, id, acks, errs, max, t.opt.PollAckTimeout)
		if err != nil {
			return err
		}
		acks, errs = nil, nil
		if len(sets) > 0 || in.ReturnImmediately || max == 0 || !time.Now().Before(deadline) {
			break
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
	out := pollResponse{Sets: map[string]string{}, MoreAvailable: more}
	for _, s := range sets {
		token, err := t.opt.Keys.Sign(ctx, TypSET, json.RawMessage(s.Claims))
		if err != nil {
			return err
		}
		out.Sets[s.JTI] = token
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Bounds on what a receiver reports in setErrs (RFC 8936 §2.4.1).
const (
	maxSetErrs           = 1000 // entries processed per poll; the rest stay outstanding and come back
	maxSetErrCode        = 64   // characters of an error code kept
	maxSetErrDescription = 256  // characters of a description kept
	maxJTI               = 100  // no SET of mdmd has a longer jti
)

// setErrs turns a poll's setErrs into the failures to record: at most
// maxSetErrs of them (by jti order), each message cut short, logged once
// for the poll rather than once per entry.
func (t *Transmitter) setErrs(streamID string, in map[string]setError) map[string]string {
	if len(in) == 0 {
		return nil
	}
	jtis := slices.DeleteFunc(slices.Sorted(maps.Keys(in)), func(jti string) bool { return jti == "" || len(jti) > maxJTI })
	ignored := len(in) - len(jtis)
	if len(jtis) > maxSetErrs {
		ignored += len(jtis) - maxSetErrs
		jtis = jtis[:maxSetErrs]
	}
	out := make(map[string]string, len(jtis))
	for _, jti := range jtis {
		e := in[jti]
		out[jti] = strings.TrimSuffix(clipRunes(e.Err, maxSetErrCode)+": "+clipRunes(e.Description, maxSetErrDescription), ": ")
	}
	if len(jtis) > 0 {
		t.log.Warn("receiver reported bad SETs", "stream_id", streamID, "count", len(jtis), "ignored", ignored,
			"example_jti", jtis[0], "example_err", out[jtis[0]])
	} else {
		t.log.Warn("receiver reported bad SETs that are none of mdmd's", "stream_id", streamID, "ignored", ignored)
	}
	return out
}

// clipRunes cuts s to at most n characters.
func clipRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (t *Transmitter) adminList(w http.ResponseWriter, r *http.Request) error {
	streams, err := t.st.ListSSFStreams(r.Context(), "")
	if err != nil {
		return err
	}
	if streams == nil {
		streams = []mdmd.SSFStream{}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"items": streams})
	return nil
}

// adminStatus is an administrator's status change (AdminSetStatus).
func (t *Transmitter) adminStatus(reg web.Registrar, w http.ResponseWriter, r *http.Request) error {
	m, err := members(r)
	if err != nil {
		return err
	}
	status, ok, err := str(m, "status")
	if err == nil && !ok {
		err = mdmd.FieldError("status", "required")
	}
	if err != nil {
		return err
	}
	reason, _, err := str(m, "reason")
	if err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	st, err := t.AdminSetStatus(r.Context(), id, status, reason)
	if err != nil {
		return err
	}
	reg.Audit(r, "ssf.stream.status", "ssf_stream", id, mdmd.OutcomeSuccess, reason, AdminStatusAudit(status))
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

// streamRequest reads a request body's members and the stream it names,
// which every stream request must.
func streamRequest(r *http.Request) (map[string]json.RawMessage, string, error) {
	m, err := members(r)
	if err != nil {
		return nil, "", err
	}
	id, ok, err := str(m, "stream_id")
	if err != nil {
		return nil, "", err
	}
	if !ok || id == "" {
		return nil, "", mdmd.FieldError("stream_id", "required")
	}
	return m, id, nil
}
