package mdmd

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// EventWebhookTest is the type of the ping sent by a webhook test. It is
// never in the event log and an endpoint cannot subscribe to it: a test
// goes to the endpoint it was asked for, whatever its event types.
const EventWebhookTest = "webhook.test"

// Webhook delivery states.
const (
	WebhookPending   = "pending"   // waiting for its next attempt
	WebhookDelivered = "delivered" // the receiver answered 2xx
	WebhookFailed    = "failed"    // given up: out of attempts, or 410 Gone
)

// WebhookDeliveryStates lists every delivery state.
var WebhookDeliveryStates = []string{WebhookPending, WebhookDelivered, WebhookFailed}

// MaxWebhookEndpoints bounds how many endpoints may exist: every event is
// fanned out to each of them in one transaction.
const MaxWebhookEndpoints = 100

// WebhookEndpoint is a receiver of signed webhooks: an identity provider
// or a SIEM that subscribes to device events. Its signing secret is kept
// sealed (secret.Box, labelled with the endpoint's ID) and never leaves
// mdmd except once, when it is created or rotated. After a rotation the
// previous secret keeps signing too, until PreviousSecretUntil.
type WebhookEndpoint struct {
	ID   string `json:"id" gorm:"column:id;primaryKey"`
	Name string `json:"name" gorm:"column:name"`
	URL  string `json:"url" gorm:"column:url"`
	// EventTypes is a subset of EventTypes; empty subscribes to all.
	EventTypes []string `json:"event_types" gorm:"column:event_types;serializer:json"`
	Enabled    bool     `json:"enabled" gorm:"column:enabled"`
	// DisabledReason says why mdmd disabled the endpoint itself (a
	// receiver that answered 410 Gone); an administrator's change clears it.
	DisabledReason       string     `json:"disabled_reason,omitempty" gorm:"column:disabled_reason"`
	SecretSealed         []byte     `json:"-" gorm:"column:secret_enc"`
	PreviousSecretSealed []byte     `json:"-" gorm:"column:prev_secret_enc"`
	PreviousSecretUntil  *time.Time `json:"previous_secret_expires_at,omitempty" gorm:"column:prev_secret_until"`
	CreatedAt            time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt            time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

// Wants reports whether the endpoint subscribes to an event type.
func (e *WebhookEndpoint) Wants(eventType string) bool {
	return len(e.EventTypes) == 0 || slices.Contains(e.EventTypes, eventType)
}

// Validate checks an endpoint's name, URL and event types.
func (e *WebhookEndpoint) Validate() error {
	name := strings.TrimSpace(e.Name)
	if name == "" || len(name) > 200 || name != e.Name {
		return FieldError("name", "must be 1 to 200 characters without surrounding spaces")
	}
	if err := ValidateWebhookURL(e.URL); err != nil {
		return err
	}
	for _, t := range e.EventTypes {
		if !slices.Contains(EventTypes, t) {
			return FieldError("event_types", "unknown event type %q (known: %s)", t, strings.Join(EventTypes, ", "))
		}
	}
	return nil
}

// ValidateWebhookURL checks a receiver's URL: https, or plain http to a
// loopback address (localhost, 127.0.0.0/8, ::1) for development and
// tests, since a webhook carries device data. It may not hold
// credentials (they would be shown in listings and logs; the signature
// authenticates mdmd) or a fragment.
func ValidateWebhookURL(raw string) error {
	if raw == "" || len(raw) > 2000 {
		return FieldError("url", "must be 1 to 2000 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Hostname() == "" {
		return FieldError("url", "must be an absolute http(s) URL with a host")
	}
	switch {
	case u.User != nil:
		return FieldError("url", "must not hold credentials")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return FieldError("url", "must not have a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return FieldError("url", "must use https (plain http is allowed only to localhost)")
	}
	return FieldError("url", "must be an https URL, got scheme %q", u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// WebhookEndpointUpdate changes the fields that are set.
type WebhookEndpointUpdate struct {
	Name       *string
	URL        *string
	EventTypes *[]string
	Enabled    *bool
}

// WebhookDelivery is one event (or test ping) for one endpoint: the
// outbox row that a delivery worker claims under a lease, sends, and
// either marks delivered, schedules again or gives up on. MessageID is
// the webhook-id header: the same on every attempt and redelivery, so a
// receiver can drop duplicates.
type WebhookDelivery struct {
	ID         string  `json:"id" gorm:"column:id;primaryKey"`
	EndpointID string  `json:"endpoint_id" gorm:"column:endpoint_id"`
	EventSeq   int64   `json:"event_seq,omitempty" gorm:"column:event_seq"` // 0 for a test ping
	EventType  string  `json:"event_type" gorm:"column:event_type"`
	MessageID  string  `json:"message_id" gorm:"column:message_id"`
	Payload    RawJSON `json:"payload" gorm:"column:payload"`
	State      string  `json:"state" gorm:"column:state"`
	// Held is set on the pending deliveries of a disabled endpoint: they
	// are not claimed (nor looked at by claims) until it is enabled again.
	Held bool `json:"held,omitempty" gorm:"column:held"`
	// Attempts counts every attempt ever made and numbers the attempt log;
	// RoundAttempts counts those since the delivery was last queued (a
	// redelivery starts a new round), and drives backoff and giving up.
	Attempts      int        `json:"attempts" gorm:"column:attempts"`
	RoundAttempts int        `json:"round_attempts" gorm:"column:round_attempts"`
	NextAttemptAt time.Time  `json:"next_attempt_at" gorm:"column:next_attempt_at"`
	LeaseOwner    string     `json:"-" gorm:"column:lease_owner"`
	LeaseUntil    *time.Time `json:"-" gorm:"column:lease_until"`
	LastStatus    int        `json:"last_status,omitempty" gorm:"column:last_status"`
	LastError     string     `json:"last_error,omitempty" gorm:"column:last_error"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty" gorm:"column:delivered_at"`
	CreatedAt     time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt     time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

// WebhookAttempt is one entry of a delivery's attempt log. Status is the
// receiver's HTTP status, 0 when none came (a network error, a timeout,
// or an attempt skipped because the endpoint had just failed).
type WebhookAttempt struct {
	DeliveryID string    `json:"delivery_id" gorm:"column:delivery_id;primaryKey"`
	Attempt    int       `json:"attempt" gorm:"column:attempt;primaryKey"`
	At         time.Time `json:"at" gorm:"column:at"`
	Status     int       `json:"status" gorm:"column:status"`
	Error      string    `json:"error,omitempty" gorm:"column:error"`
	DurationMS int64     `json:"duration_ms" gorm:"column:duration_ms"`
}

// WebhookDeliveryFilter selects deliveries, newest first. After is the
// cursor from the previous page.
type WebhookDeliveryFilter struct {
	EndpointID string
	State      string
	After      string
	Limit      int
}

// Validate checks a filter.
func (f *WebhookDeliveryFilter) Validate() error {
	if f.State != "" && !slices.Contains(WebhookDeliveryStates, f.State) {
		return FieldError("state", "must be one of %s", strings.Join(WebhookDeliveryStates, ", "))
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return FieldError("limit", "must be between 1 and %d", MaxPageSize)
	}
	return nil
}
