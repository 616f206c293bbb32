package android

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/jobs"
)

// DevicesJob is the job kind that lists every device from AMAPI to catch
// notifications that never arrived.
const DevicesJob = "android.reconcile_devices"

// ReconcileDevices pages through AMAPI's device list and applies each
// device as a status report would: a device mdmd never heard of (a lost
// ENROLLMENT) is created; one it knows is updated unless the stored report
// is newer. Each page counts against the rate limit.
func (s *Service) ReconcileDevices(ctx context.Context, _ *mdmd.Job) error {
	e, err := s.GetEnterprise(ctx)
	if err != nil {
		if mdmd.IsCode(err, mdmd.EConflict) {
			return nil // nothing bound yet
		}
		return err
	}
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	token := ""
	for pages := 0; pages < 10000; pages++ {
		ok, _, err := s.take(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return mdmd.Errorf(mdmd.ERateLimited, "rate limit reached; the next run continues")
		}
		call := c.Enterprises.Devices.List(e.Name).PageSize(100).Context(ctx)
		if token != "" {
			call = call.PageToken(token)
		}
		resp, err := call.Do()
		if err != nil {
			if mdmd.IsCode(amapiErr(err), mdmd.ERateLimited) {
				return jobs.RetryAfter(err, time.Now().Add(60*time.Second+time.Duration(mrand.Int64N(int64(30*time.Second)))))
			}
			return amapiErr(err)
		}
		for _, d := range resp.Devices {
			u, err := Translate(d, true)
			if err != nil {
				s.log.Warn("skipping a listed device", "name", d.Name, "err", err)
				continue
			}
			at := time.Now()
			if u.State.LastStatusReport != nil {
				at = *u.State.LastStatusReport
			}
			u.MessageID = "list:" + d.Name + ":" + at.UTC().Format(time.RFC3339Nano)
			u.PublishTime = at
			if _, _, err := s.st.ApplyAndroidUpdate(ctx, *u); err != nil {
				return err
			}
		}
		if resp.NextPageToken == "" {
			return nil
		}
		token = resp.NextPageToken
	}
	return nil
}
