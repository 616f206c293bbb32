package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	am "google.golang.org/api/androidmanagement/v1"

	"github.com/mdmd/mdmd/android/fakeamapi"
)

// androidPhases binds an enterprise in the fake AMAPI, enrolls devices,
// then times (1) the ingest of STATUS_REPORT pushes and (2) a lock of
// lockDevices devices through the durable queue under the rate limit.
func androidPhases(c config, srv *server, api *apiClient, fake *fakeamapi.Server, pg bool) ([]string, error) {
	var rows []string
	name := fake.CreateEnterprise("Bench Co")
	var ent struct {
		PushEndpoint string `json:"push_endpoint"`
	}
	if err := api.do("PUT", "/api/v1/android/enterprise", map[string]string{"name": name}, &ent); err != nil {
		return nil, err
	}
	fake.SetPushEndpoint(ent.PushEndpoint)
	var tok struct{ Value string }
	if err := api.do("POST", "/api/v1/android/enrollment-tokens", map[string]any{"kind": "fully_managed", "one_time": false, "duration_hours": 24}, &tok); err != nil {
		return nil, err
	}
	n := max(c.androidDevices, c.lockDevices)
	fmt.Printf("enrolling %d Android devices in the fake AMAPI…\n", n)
	var names []string
	for i := 0; i < n; i++ {
		dn, err := fake.Enroll(tok.Value, fakeamapi.HealthyPosture)
		if err != nil {
			return nil, err
		}
		names = append(names, dn)
	}
	for fake.Pending() > 0 || fake.Delivered.Load() < int64(2*n) {
		time.Sleep(50 * time.Millisecond)
	}

	// Ingest: signed-off Pub/Sub pushes built before timing, each a newer
	// report with a new message ID.
	reports := c.reports
	bodies := make([][]byte, reports)
	for i := range bodies {
		d, _ := fake.Device(names[i%c.androidDevices])
		d.LastStatusReportTime = time.Now().Add(time.Duration(i) * time.Millisecond).UTC().Format(time.RFC3339Nano)
		d.SoftwareInfo = &am.SoftwareInfo{AndroidVersion: "15", SecurityPatchLevel: "2026-10-05"}
		data, _ := json.Marshal(d)
		bodies[i] = fakeamapi.PushEnvelope("STATUS_REPORT", data, fmt.Sprintf("bench-%d", i), time.Now().Add(time.Duration(i)*time.Millisecond))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.concurrency * 2}}
	var applied atomic.Int64
	m := newMeter(srv.cmd.Process.Pid, pg)
	lat := parallel(reports, c.concurrency, func(i int) error {
		resp, err := client.Post(ent.PushEndpoint, "application/json", bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("push: %s", resp.Status)
		}
		applied.Add(1)
		return nil
	})
	rows = append(rows, m.row("Android STATUS_REPORT push ingested (deduplicated, ordered, posture stored)", int(applied.Load()), lat))

	if c.lockDevices > 0 {
		fmt.Printf("locking %d Android devices at %d calls per %s…\n", c.lockDevices, c.amapiRate, c.amapiWindow)
		before := fake.Calls("issueCommand")
		start := time.Now()
		var ids []string
		cursor := ""
		for {
			var page struct {
				Items      []struct{ ID string }
				NextCursor string `json:"next_cursor"`
			}
			if err := api.do("GET", "/api/v1/devices?platform=android&limit=1000&cursor="+cursor, nil, &page); err != nil {
				return nil, err
			}
			for _, it := range page.Items {
				if len(ids) < c.lockDevices {
					ids = append(ids, it.ID)
				}
			}
			if page.NextCursor == "" || len(ids) >= c.lockDevices {
				break
			}
			cursor = page.NextCursor
		}
		start = time.Now()
		for _, id := range ids {
			if err := api.do("POST", "/api/v1/devices/"+id+"/actions/lock", map[string]any{}, nil); err != nil {
				return nil, err
			}
		}
		queued := time.Since(start)
		for fake.Calls("issueCommand")-before < len(ids) {
			if time.Since(start) > 2*time.Hour {
				return nil, fmt.Errorf("locks still incomplete after 2 h")
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		// The busiest span of one window's length, anywhere in the run.
		busiest := busiestSpan(fake.CallTimes(), c.amapiWindow)
		rows = append(rows, fmt.Sprintf("| lock %d Android devices: queued in %s, all issued to AMAPI after %s; busiest %s span: %d calls (limit %d) | %d | %.1f | – | – | – | – |",
			len(ids), fmtDur(queued), fmtDur(took), c.amapiWindow, busiest, c.amapiRate, len(ids), float64(len(ids))/took.Seconds()))
	}
	return rows, nil
}

// busiestSpan is the largest number of calls in any span of length window.
func busiestSpan(times []time.Time, window time.Duration) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	busiest, lo := 0, 0
	for hi, t := range times {
		for t.Sub(times[lo]) >= window {
			lo++
		}
		busiest = max(busiest, hi-lo+1)
	}
	return busiest
}
