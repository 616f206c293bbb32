package mdmd

import "time"

// Android enrollment token kinds.
const (
	AndroidWorkProfile  = "work_profile"  // personal device, work profile (BYOD)
	AndroidFullyManaged = "fully_managed" // company device, fully managed
)

// AndroidToken is an AMAPI enrollment token mdmd created. The value and
// QR payload are sealed.
type AndroidToken struct {
	ID          string     `json:"id" gorm:"column:id;primaryKey"`
	Name        string     `json:"name" gorm:"column:name"`
	Kind        string     `json:"kind" gorm:"column:kind"`
	OwnerUser   string     `json:"owner_user" gorm:"column:owner_user"`
	PolicyName  string     `json:"policy_name,omitempty" gorm:"column:policy_name"`
	OneTime     bool       `json:"one_time" gorm:"column:one_time"`
	ValueSealed []byte     `json:"-" gorm:"column:value_sealed"`
	QRSealed    []byte     `json:"-" gorm:"column:qr_sealed"`
	ExpiresAt   time.Time  `json:"expires_at" gorm:"column:expires_at"`
	CreatedBy   string     `json:"created_by" gorm:"column:created_by"`
	CreatedAt   time.Time  `json:"created_at" gorm:"column:created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty" gorm:"column:revoked_at"`
}

// AndroidDevice is the Android side of a managed device.
type AndroidDevice struct {
	DeviceID             string     `json:"device_id" gorm:"column:device_id;primaryKey"`
	AMAPIName            string     `json:"amapi_name" gorm:"column:amapi_name"`
	TokenID              string     `json:"token_id,omitempty" gorm:"column:token_id"`
	ManagementMode       string     `json:"management_mode" gorm:"column:management_mode"`
	AMAPIOwnership       string     `json:"amapi_ownership" gorm:"column:amapi_ownership"`
	AppliedState         string     `json:"applied_state" gorm:"column:applied_state"`
	PolicyName           string     `json:"policy_name" gorm:"column:policy_name"`
	AppliedPolicyVersion int64      `json:"applied_policy_version" gorm:"column:applied_policy_version"`
	PolicyCompliant      bool       `json:"policy_compliant" gorm:"column:policy_compliant"`
	NonCompliance        RawJSON    `json:"non_compliance,omitempty" gorm:"column:non_compliance"`
	LastStatusReport     *time.Time `json:"last_status_report,omitempty" gorm:"column:last_status_report"`
	LastPublishTime      time.Time  `json:"-" gorm:"column:last_publish_time"`
	UpdatedAt            time.Time  `json:"updated_at" gorm:"column:updated_at"`
}

// AndroidUpdate is one AMAPI device notification (ENROLLMENT or
// STATUS_REPORT), already translated from AMAPI's JSON.
type AndroidUpdate struct {
	MessageID   string
	PublishTime time.Time
	// Enrollment makes an unknown device a new one (an ENROLLMENT message);
	// a status report for an unknown device is not found.
	Enrollment bool
	State      AndroidDevice
	Posture    *Posture
	// Device fields reported by AMAPI.
	Model, SerialNumber, OSVersion string
}

// Results of applying a notification.
const (
	UpdateApplied   = "applied"
	UpdateDuplicate = "duplicate" // the message was applied before
	UpdateStale     = "stale"     // older than what is stored
)

// AndroidPolicy is an mdmd policy as last saved to AMAPI.
type AndroidPolicy struct {
	ID        string    `json:"id" gorm:"column:id;primaryKey"`
	AMAPIName string    `json:"amapi_name" gorm:"column:amapi_name"`
	Settings  RawJSON   `json:"settings" gorm:"column:settings"`
	Version   int64     `json:"version" gorm:"column:version"`
	UpdatedBy string    `json:"updated_by" gorm:"column:updated_by"`
	UpdatedAt time.Time `json:"updated_at" gorm:"column:updated_at"`
}
