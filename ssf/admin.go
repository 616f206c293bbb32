package ssf

import (
	"context"
	"encoding/json"

	"github.com/mdmd/mdmd"
)

// The administrator's side of the transmitter, shared by the admin API
// and the web console so that both change and audit a stream alike.

// AdminStream is a stream as an administrator sees it: with how many of
// its SETs wait, are outstanding (polled, not acknowledged) or failed.
type AdminStream struct {
	mdmd.SSFStream
	Pending, Outstanding, Failed int64
}

// Audience is the stream's aud as a list.
func (s *AdminStream) Audience() []string {
	aud, _ := audience(json.RawMessage(s.Aud))
	return aud
}

// Requested is the list of events the receiver asked for (nil: none in particular).
func (s *AdminStream) Requested() []string { return jsonStrings(s.EventsRequested) }

// Delivered is the list of events the stream carries.
func (s *AdminStream) Delivered() []string { return jsonStrings(s.EventsDelivered) }

// Endpoint is the push endpoint without its query, which may hold a credential.
func (s *AdminStream) Endpoint() string { return redactURL(s.EndpointURL) }

func jsonStrings(raw mdmd.RawJSON) []string {
	var out []string
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out)
	}
	return out
}

// AdminStreams lists every receiver's streams with their queue counts.
func (t *Transmitter) AdminStreams(ctx context.Context) ([]AdminStream, error) {
	streams, err := t.st.ListSSFStreams(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]AdminStream, len(streams))
	for i := range streams {
		n, err := t.st.CountSSFSets(ctx, streams[i].ID)
		if err != nil {
			return nil, err
		}
		out[i] = AdminStream{SSFStream: streams[i], Pending: n[mdmd.SETPending], Outstanding: n[mdmd.SETOutstanding], Failed: n[mdmd.SETFailed]}
	}
	return out, nil
}

// AdminSetStatus is the transmitter changing a stream's status: the
// receiver gets a stream-updated event first (it is delivered even to a
// stream that is being paused or disabled). While an administrator's
// pause or disable is in force, the receiver cannot change the status.
func (t *Transmitter) AdminSetStatus(ctx context.Context, id, status, reason string) (*mdmd.SSFStream, error) {
	st, err := t.st.GetSSFStream(ctx, "", id)
	if err != nil {
		return nil, err
	}
	event := map[string]string{"status": status}
	if reason != "" {
		event["reason"] = reason
	}
	set, err := t.controlSET(st, EventStreamUpdated, event)
	if err != nil {
		return nil, err
	}
	if st, err = t.st.SetSSFStreamStatus(ctx, "", id, status, reason, mdmd.SSFStatusByAdmin, set); err != nil {
		return nil, err
	}
	t.Wake()
	return st, nil
}

// AdminDelete deletes any receiver's stream (a stream outlives its
// token; an administrator removes those of a receiver whose token was revoked).
func (t *Transmitter) AdminDelete(ctx context.Context, id string) error {
	return t.st.DeleteSSFStream(ctx, "", id)
}

// AdminStatusAudit is what the audit log records of an administrator's
// status change (the reason is the entry's reason).
func AdminStatusAudit(status string) map[string]any {
	return map[string]any{"status": status, "by": "transmitter"}
}

// AdminDeleteAudit is what the audit log records of an administrator's deletion.
func AdminDeleteAudit() map[string]any { return map[string]any{"by": "administrator"} }
