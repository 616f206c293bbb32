package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// The shared-signals page on every backend: a stream a receiver created
// through the SSF API is listed; an administrator's pause from the
// console sticks (the receiver cannot undo it), is audited and tells the
// receiver; bad input changes nothing; deleting needs the ID typed back;
// other roles get 403.
func TestSSFPage(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			g := newSettingsRig(t, be.URL)
			admin := mdmd.RoleAdmin
			rcv, tok := g.token("okta-receiver", mdmd.RoleSSFReceiver)
			status, body := g.call("POST", ssf.StreamsPath, rcv, map[string]any{"delivery": map[string]any{"method": mdmd.SSFDeliveryPoll},
				"events_requested": []string{ssf.EventDeviceComplianceChange}, "description": "Okta"})
			var created struct {
				StreamID string `json:"stream_id"`
			}
			if json.Unmarshal(body, &created); status != http.StatusCreated || created.StreamID == "" {
				t.Fatalf("create stream through the API: %d %s", status, body)
			}
			id := created.StreamID

			status, page := g.do(admin, "GET", "/settings/ssf", nil)
			for _, want := range []string{id, "okta-receiver", tok.ID, "urn:mdmd:ssf:receiver:" + tok.ID, "poll", ssf.EventDeviceComplianceChange, "the receiver"} {
				if !strings.Contains(page, want) {
					t.Errorf("the stream list lacks %q", want)
				}
			}
			if status != http.StatusOK {
				t.Fatalf("GET /settings/ssf: %d", status)
			}

			// Refused: an unknown status, a reason too long, a wrong or
			// missing confirmation. Nothing changes.
			for _, tc := range []struct {
				path string
				form url.Values
				want string
			}{
				{"/status", url.Values{"status": {"asleep"}}, "must be enabled, paused or disabled"},
				{"/status", url.Values{"status": {"paused"}, "reason": {strings.Repeat("x", 501)}}, "at most 500 characters"},
				{"/delete", url.Values{"confirm": {"yes"}}, "type the stream"},
				{"/delete", url.Values{}, "type the stream"},
			} {
				status, page := g.do(admin, "POST", "/settings/ssf/"+id+tc.path, tc.form)
				if status != http.StatusBadRequest || !strings.Contains(page, `id="stream-error"`) || !strings.Contains(page, tc.want) {
					t.Errorf("%s %v: %d", tc.path, tc.form, status)
				}
			}
			if st, err := g.st.GetSSFStream(ctx, "", id); err != nil || st.Status != mdmd.SSFStatusEnabled {
				t.Fatalf("after refused forms: %+v %v", st, err)
			}
			if status, _ := g.do(admin, "POST", "/settings/ssf/no-such-stream/status", url.Values{"status": {"paused"}}); status != http.StatusNotFound {
				t.Errorf("pausing an unknown stream: %d", status)
			}

			// Pause: it sticks, the receiver hears of it and cannot undo it.
			if status, _ := g.do(admin, "POST", "/settings/ssf/"+id+"/status", url.Values{"status": {"paused"}, "reason": {"audit week"}}); status != http.StatusSeeOther {
				t.Fatalf("pause: %d", status)
			}
			status, body = g.call("POST", ssf.StatusPath, rcv, map[string]any{"stream_id": id, "status": "enabled"})
			if status != http.StatusForbidden {
				t.Errorf("the receiver enabling an admin-paused stream: %d %s", status, body)
			}
			st, _ := g.st.GetSSFStream(ctx, "", id)
			if st.Status != mdmd.SSFStatusPaused || st.StatusBy != mdmd.SSFStatusByAdmin || st.StatusReason != "audit week" {
				t.Errorf("after the pause: %+v", st)
			}
			sets, _ := g.st.ListSSFSets(ctx, id, 10)
			if len(sets) != 1 || sets[0].EventType != ssf.EventStreamUpdated {
				t.Errorf("the receiver was not sent a stream-updated event: %+v", sets)
			}
			if evs := g.audits("ssf.stream.status"); len(evs) != 1 || evs[0].Reason != "audit week" || !strings.Contains(string(evs[0].Details), `"status":"paused"`) {
				t.Errorf("the pause's audit: %+v", evs)
			}
			if _, page := g.do(admin, "GET", "/settings/ssf", nil); !strings.Contains(page, "an administrator") || !strings.Contains(page, "audit week") {
				t.Error("the list does not show who paused the stream and why")
			}

			g.forbiddenToOthers([][2]string{{"GET", "/settings/ssf"}, {"POST", "/settings/ssf/" + id + "/status"}, {"POST", "/settings/ssf/" + id + "/delete"}})

			// Delete with the ID typed back.
			if status, _ := g.do(admin, "POST", "/settings/ssf/"+id+"/delete", url.Values{"confirm": {id}}); status != http.StatusSeeOther {
				t.Fatalf("delete: %d", status)
			}
			if _, err := g.st.GetSSFStream(ctx, "", id); !mdmd.IsCode(err, mdmd.ENotFound) || len(g.audits("ssf.stream.delete")) != 1 {
				t.Errorf("after delete: %v", err)
			}
		})
	}
}
