package storage

import (
	"context"
	"time"

	"github.com/mdmd/mdmd"
)

// WebhookEndpointStats summarises one endpoint's deliveries for the
// console's webhook list: how many wait or failed, and how the newest went.
type WebhookEndpointStats struct {
	Pending, Failed int64
	// Last is the endpoint's newest delivery, nil when it has none.
	Last *mdmd.WebhookDelivery
}

// WebhookEndpointStats returns the delivery summary of every endpoint
// that has deliveries, by endpoint ID.
func (s *Store) WebhookEndpointStats(ctx context.Context) (map[string]WebhookEndpointStats, error) {
	var counts []struct {
		EndpointID string
		State      string
		N          int64
	}
	if err := s.table(ctx, "webhook_deliveries").Select("endpoint_id, state, COUNT(*) AS n").
		Where("state IN ?", []string{mdmd.WebhookPending, mdmd.WebhookFailed}).Group("endpoint_id, state").Scan(&counts).Error; err != nil {
		return nil, dbErr(err, "webhook deliveries")
	}
	var newest []string
	if err := s.table(ctx, "webhook_deliveries").Select("MAX(id)").Group("endpoint_id").Pluck("MAX(id)", &newest).Error; err != nil {
		return nil, dbErr(err, "webhook deliveries")
	}
	var last []mdmd.WebhookDelivery
	if len(newest) > 0 {
		if err := s.table(ctx, "webhook_deliveries").Where("id IN ?", newest).Find(&last).Error; err != nil {
			return nil, dbErr(err, "webhook deliveries")
		}
	}
	out := map[string]WebhookEndpointStats{}
	for _, c := range counts {
		st := out[c.EndpointID]
		if c.State == mdmd.WebhookPending {
			st.Pending = c.N
		} else {
			st.Failed = c.N
		}
		out[c.EndpointID] = st
	}
	for i := range last {
		st := out[last[i].EndpointID]
		st.Last = &last[i]
		out[last[i].EndpointID] = st
	}
	return out, nil
}

// MTDPartner is an API token of role mtd_partner with the verdicts it
// holds: on how many devices, and when it last reported a level.
type MTDPartner struct {
	mdmd.APIToken
	Devices      int64
	LastReportAt *time.Time
}

// MTDPartners returns every MTD partner token, newest first, revoked ones
// included (their verdicts stand until an admin releases the devices).
func (s *Store) MTDPartners(ctx context.Context) ([]MTDPartner, error) {
	var toks []mdmd.APIToken
	if err := s.table(ctx, "api_tokens").Where("role = ?", mdmd.RoleMTDPartner).Order("id DESC").
		Limit(mdmd.MaxPageSize).Find(&toks).Error; err != nil {
		return nil, dbErr(err, "API tokens")
	}
	out := make([]MTDPartner, len(toks))
	for i, t := range toks {
		out[i].APIToken = t
		q := s.table(ctx, "device_threats").Where("reported_by = ?", t.ID)
		if err := q.Count(&out[i].Devices).Error; err != nil {
			return nil, dbErr(err, "threats")
		}
		if out[i].Devices == 0 {
			continue
		}
		var newest mdmd.DeviceThreat
		if err := s.table(ctx, "device_threats").Where("reported_by = ?", t.ID).Order("reported_at DESC").Take(&newest).Error; err != nil {
			return nil, dbErr(err, "threats")
		}
		out[i].LastReportAt = &newest.ReportedAt
	}
	return out, nil
}

// DeviceThreatRow is a device's current MTD verdict with the names an
// administrator reads: the device's and the reporting partner token's.
type DeviceThreatRow struct {
	mdmd.DeviceThreat `gorm:"embedded"`
	DeviceName        string `gorm:"column:device_name"`
	Platform          string `gorm:"column:platform"`
	PartnerName       string `gorm:"column:partner_name"`
}

// ListDeviceThreats returns the devices with a current verdict, by
// device ID from after (the previous page's cursor), and the next
// page's cursor ("" on the last).
func (s *Store) ListDeviceThreats(ctx context.Context, after string, limit int) ([]DeviceThreatRow, string, error) {
	limit = limitOf(limit)
	q := s.table(ctx, "device_threats").
		Select("device_threats.*, devices.name AS device_name, devices.platform AS platform, api_tokens.name AS partner_name").
		Joins("LEFT JOIN devices ON devices.id = device_threats.device_id").
		Joins("LEFT JOIN api_tokens ON api_tokens.id = device_threats.reported_by")
	if after != "" {
		q = q.Where("device_threats.device_id > ?", after)
	}
	var out []DeviceThreatRow
	if err := q.Order("device_threats.device_id").Limit(limit + 1).Scan(&out).Error; err != nil {
		return nil, "", dbErr(err, "threats")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].DeviceID
	}
	return out, next, nil
}
