package mdmd

import "time"

// JobStatus is where a background job is in its lifecycle.
type JobStatus string

const (
	JobQueued  JobStatus = "queued"
	JobRunning JobStatus = "running" // claimed under a lease
	JobDone    JobStatus = "done"
	JobDead    JobStatus = "dead" // failed MaxAttempts times
)

// Job is a unit of durable background work. Any replica may claim it; the
// claim is a lease, so a job whose worker died is picked up again once the
// lease runs out, and a worker whose lease was lost cannot complete it.
type Job struct {
	ID          string    `json:"id" gorm:"column:id;primaryKey"`
	Kind        string    `json:"kind" gorm:"column:kind"`
	Payload     []byte    `json:"-" gorm:"column:payload"`
	Status      JobStatus `json:"status" gorm:"column:status"`
	RunAt       time.Time `json:"run_at" gorm:"column:run_at"`
	Attempts    int       `json:"attempts" gorm:"column:attempts"`
	MaxAttempts int       `json:"max_attempts" gorm:"column:max_attempts"`
	// UniqueKey, when set, makes enqueueing idempotent: a second job with the
	// same key is not created. Periodic jobs use it so that every replica may
	// schedule the same slot and exactly one job results.
	UniqueKey  *string    `json:"unique_key,omitempty" gorm:"column:unique_key"`
	LeaseOwner string     `json:"lease_owner,omitempty" gorm:"column:lease_owner"`
	LeaseUntil *time.Time `json:"lease_until,omitempty" gorm:"column:lease_until"`
	LastError  string     `json:"last_error,omitempty" gorm:"column:last_error"`
	CreatedAt  time.Time  `json:"created_at" gorm:"column:created_at"`
	UpdatedAt  time.Time  `json:"updated_at" gorm:"column:updated_at"`
	DoneAt     *time.Time `json:"done_at,omitempty" gorm:"column:done_at"`
}

// Validate checks a job before it is queued.
func (j *Job) Validate() error {
	if j.Kind == "" || len(j.Kind) > 100 {
		return FieldError("kind", "must be 1 to 100 characters")
	}
	if j.MaxAttempts < 1 {
		return FieldError("max_attempts", "must be at least 1")
	}
	return nil
}
