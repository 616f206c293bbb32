package mdmd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Actor types recorded in the audit log.
const (
	ActorAdmin  = "admin"  // a console user
	ActorToken  = "token"  // an API token
	ActorDevice = "device" // a device acting through its identity
	ActorSystem = "system" // mdmd itself
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// AuditEvent is one entry of the append-only, hash-chained audit log. Hash
// covers every other field and the previous entry's hash, so an edited,
// deleted or reordered entry breaks the chain.
type AuditEvent struct {
	Seq        int64           `json:"seq" gorm:"column:seq;primaryKey;autoIncrement:false"`
	At         time.Time       `json:"at" gorm:"column:at"`
	ActorType  string          `json:"actor_type" gorm:"column:actor_type"`
	Actor      string          `json:"actor" gorm:"column:actor"`
	Action     string          `json:"action" gorm:"column:action"`
	TargetType string          `json:"target_type" gorm:"column:target_type"`
	TargetID   string          `json:"target_id" gorm:"column:target_id"`
	Reason     string          `json:"reason,omitempty" gorm:"column:reason"`
	Outcome    string          `json:"outcome" gorm:"column:outcome"`
	Details    json.RawMessage `json:"details,omitempty" gorm:"column:details"`
	RequestID  string          `json:"request_id,omitempty" gorm:"column:request_id"`
	PrevHash   string          `json:"prev_hash" gorm:"column:prev_hash"`
	Hash       string          `json:"hash" gorm:"column:hash"`
}

// ComputeHash returns the chain hash of e given the previous entry's hash.
// It covers the sequence number so that reordering is detected too.
func (e *AuditEvent) ComputeHash(prev string) string {
	canon, _ := json.Marshal(struct {
		Seq        int64           `json:"seq"`
		At         string          `json:"at"`
		ActorType  string          `json:"actor_type"`
		Actor      string          `json:"actor"`
		Action     string          `json:"action"`
		TargetType string          `json:"target_type"`
		TargetID   string          `json:"target_id"`
		Reason     string          `json:"reason"`
		Outcome    string          `json:"outcome"`
		Details    json.RawMessage `json:"details"`
		RequestID  string          `json:"request_id"`
		Prev       string          `json:"prev"`
	}{e.Seq, e.At.UTC().Format(time.RFC3339Nano), e.ActorType, e.Actor, e.Action, e.TargetType,
		e.TargetID, e.Reason, e.Outcome, normJSON(e.Details), e.RequestID, prev})
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// normJSON makes stored JSON compare equal whatever whitespace the database
// kept (PostgreSQL's jsonb reformats it).
func normJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return raw
	}
	out, _ := json.Marshal(v)
	return out
}

// AuditFilter selects audit entries; entries come newest first.
type AuditFilter struct {
	Actor    string
	Action   string
	TargetID string
	Since    time.Time
	Until    time.Time
	// Before is the cursor: the Seq of the last entry of the previous page.
	Before int64
	Limit  int
}
