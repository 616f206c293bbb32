package mdmd

import "time"

// Delivery methods of the OpenID Shared Signals Framework (SSF) 1.0.
const (
	SSFDeliveryPush = "urn:ietf:rfc:8935" // RFC 8935: the transmitter POSTs each SET
	SSFDeliveryPoll = "urn:ietf:rfc:8936" // RFC 8936: the receiver polls for SETs
)

// SSF stream statuses (SSF 1.0 §8.1.2).
const (
	SSFStatusEnabled  = "enabled"  // events are transmitted
	SSFStatusPaused   = "paused"   // events are held and transmitted once enabled
	SSFStatusDisabled = "disabled" // events are neither transmitted nor held
)

// SSFStatuses lists every stream status.
var SSFStatuses = []string{SSFStatusEnabled, SSFStatusPaused, SSFStatusDisabled}

// Who set a stream's status. While an administrator's pause or disable
// is in force, the receiver cannot change the status; an administrator
// can, and an administrator's enable hands the status back.
const (
	SSFStatusByReceiver = "receiver"
	SSFStatusByAdmin    = "admin"
)

// States of a queued SET.
const (
	SETPending     = "pending"     // waiting to be pushed or polled
	SETOutstanding = "outstanding" // returned by a poll, not yet acknowledged
	SETDelivered   = "delivered"   // a push got 202, or a poll was acknowledged
	SETFailed      = "failed"      // the receiver rejected it (push 400, poll setErrs)
	SETExpired     = "expired"     // undelivered past the retention
)

// SSFStream is an SSF event stream of one receiver. Owner is the ID of
// the principal (an API token of role ssf_receiver) that created it; a
// receiver sees only its own streams. Aud is the JSON of the stream's
// "aud" (a string or an array of strings). EventsRequested is the JSON
// array the receiver asked for, or empty when it asked for none in
// particular. AuthHeaderSealed is the push authorization_header sealed
// by the secret package. The push_* columns schedule push delivery of
// the whole stream: one replica at a time holds its lease, and a
// failed delivery defers the stream to PushNextAt. StatusBy says who set
// the status (SSFStatusByReceiver or SSFStatusByAdmin).
type SSFStream struct {
	ID                 string     `json:"stream_id" gorm:"column:id;primaryKey"`
	OwnerID            string     `json:"owner_id" gorm:"column:owner_id"`
	OwnerName          string     `json:"owner_name" gorm:"column:owner_name"`
	Aud                RawJSON    `json:"aud" gorm:"column:aud"`
	DeliveryMethod     string     `json:"delivery_method" gorm:"column:delivery_method"`
	EndpointURL        string     `json:"endpoint_url,omitempty" gorm:"column:endpoint_url"`
	AuthHeaderSealed   []byte     `json:"-" gorm:"column:auth_header_enc"`
	EventsRequested    RawJSON    `json:"events_requested,omitempty" gorm:"column:events_requested"`
	EventsDelivered    RawJSON    `json:"events_delivered" gorm:"column:events_delivered"`
	Description        string     `json:"description,omitempty" gorm:"column:description"`
	SubjectFormat      string     `json:"subject_format" gorm:"column:subject_format"`
	AllSubjects        bool       `json:"all_subjects" gorm:"column:all_subjects"`
	Status             string     `json:"status" gorm:"column:status"`
	StatusReason       string     `json:"status_reason,omitempty" gorm:"column:status_reason"`
	StatusBy           string     `json:"status_by" gorm:"column:status_by"`
	LastVerificationAt *time.Time `json:"last_verification_at,omitempty" gorm:"column:last_verification_at"`
	PushNextAt         time.Time  `json:"push_next_at" gorm:"column:push_next_at"`
	PushLeaseOwner     string     `json:"-" gorm:"column:push_lease_owner"`
	PushLeaseUntil     *time.Time `json:"-" gorm:"column:push_lease_until"`
	PushFailures       int        `json:"push_failures" gorm:"column:push_failures"`
	PushLastError      string     `json:"push_last_error,omitempty" gorm:"column:push_last_error"`
	CreatedAt          time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt          time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

// SSFSubject is a subject added to a stream. DeviceKey and UserKey are
// its canonical device and user identities; an empty key is a wildcard,
// so {device} matches every event about that device and {user} every
// event about a device that user owns. Subject is the JSON the receiver
// sent. On a stream with AllSubjects the rows are exclusions instead.
type SSFSubject struct {
	StreamID  string    `json:"stream_id" gorm:"column:stream_id;primaryKey"`
	DeviceKey string    `json:"device_key" gorm:"column:device_key;primaryKey"`
	UserKey   string    `json:"user_key" gorm:"column:user_key;primaryKey"`
	Subject   RawJSON   `json:"subject" gorm:"column:subject"`
	CreatedAt time.Time `json:"created_at" gorm:"column:created_at"`
}

// SSFSet is a Security Event Token queued for one stream. Claims is the
// JSON of its claims, fixed when it is queued (so every redelivery
// carries the same jti and iat); it is signed when it is delivered.
// SubjectKey groups the SETs whose order matters (one device). Control
// SETs (stream-updated) are delivered whatever the stream's status.
type SSFSet struct {
	ID         int64      `json:"id" gorm:"column:id;primaryKey;autoIncrement"`
	JTI        string     `json:"jti" gorm:"column:jti"`
	StreamID   string     `json:"stream_id" gorm:"column:stream_id"`
	EventType  string     `json:"event_type" gorm:"column:event_type"`
	SubjectKey string     `json:"subject_key" gorm:"column:subject_key"`
	Control    bool       `json:"control" gorm:"column:control"`
	Claims     RawJSON    `json:"claims" gorm:"column:claims"`
	State      string     `json:"state" gorm:"column:state"`
	Attempts   int        `json:"attempts" gorm:"column:attempts"`
	NextAt     time.Time  `json:"next_at" gorm:"column:next_at"`
	LastError  string     `json:"last_error,omitempty" gorm:"column:last_error"`
	CreatedAt  time.Time  `json:"created_at" gorm:"column:created_at"`
	DoneAt     *time.Time `json:"done_at,omitempty" gorm:"column:done_at"`
}

// SSFPushBatch is a push stream claimed for delivery with the SETs due
// on it, oldest first.
type SSFPushBatch struct {
	Stream SSFStream
	Sets   []SSFSet
}

// SigningKey is one key of a named key ring (jwtsign). Generation orders
// the ring's keys and makes each rotation create exactly one key;
// ActiveFrom is when the key starts signing. PublicJWK is the public
// JSON Web Key; KeySealed the PKCS#8 private key sealed by the secret
// package.
type SigningKey struct {
	Ring       string    `gorm:"column:ring;primaryKey"`
	Generation int64     `gorm:"column:generation;primaryKey"`
	KID        string    `gorm:"column:kid"`
	Alg        string    `gorm:"column:alg"`
	PublicJWK  RawJSON   `gorm:"column:public_jwk"`
	KeySealed  []byte    `gorm:"column:key_enc"`
	CreatedAt  time.Time `gorm:"column:created_at"`
	ActiveFrom time.Time `gorm:"column:active_from"`
}
