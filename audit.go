package mdmd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// Ways the audit chain can be found broken.
const (
	AuditEdited    = "edited"    // an entry's content no longer matches its hash
	AuditDeleted   = "deleted"   // an entry is missing: a gap in seq, or a broken link
	AuditReordered = "reordered" // an entry carries the hash of another position
)

// AuditChainError names the first bad entry of the audit chain and why.
type AuditChainError struct {
	Seq    int64  // the first bad entry (for a deletion, the first missing one)
	Kind   string // AuditEdited, AuditDeleted or AuditReordered
	Detail string
}

func (e *AuditChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s: %s", e.Seq, e.Kind, e.Detail)
}

// AuditVerifier checks the audit chain one entry at a time, oldest first
// (the order of AuditRange). The zero value expects the chain's start.
type AuditVerifier struct {
	// Count is how many entries verified.
	Count int64
	// LastSeq and LastHash are the last verified entry's.
	LastSeq  int64
	LastHash string
}

// reorderWindow is how far from its position an entry's content is looked
// for when its hash does not match there.
const reorderWindow = 256

// Next verifies the next entry, returning the first break found.
func (v *AuditVerifier) Next(e *AuditEvent) *AuditChainError {
	want := v.LastSeq + 1
	switch {
	case e.Seq > want:
		return &AuditChainError{Seq: want, Kind: AuditDeleted,
			Detail: fmt.Sprintf("entries %d to %d are missing (next entry present is seq %d)", want, e.Seq-1, e.Seq)}
	case e.Seq < want:
		return &AuditChainError{Seq: e.Seq, Kind: AuditReordered, Detail: fmt.Sprintf("seq %d comes after seq %d", e.Seq, v.LastSeq)}
	}
	if e.ComputeHash(e.PrevHash) != e.Hash {
		// Content that hashes correctly under another sequence number was
		// moved there: reordered. Otherwise it was edited.
		for d := int64(1); d <= reorderWindow; d++ {
			for _, s := range []int64{e.Seq + d, e.Seq - d} {
				if s < 1 {
					continue
				}
				moved := *e
				moved.Seq = s
				if moved.ComputeHash(e.PrevHash) == e.Hash {
					return &AuditChainError{Seq: e.Seq, Kind: AuditReordered,
						Detail: fmt.Sprintf("the entry at seq %d was written as seq %d", e.Seq, s)}
				}
			}
		}
		return &AuditChainError{Seq: e.Seq, Kind: AuditEdited, Detail: "its content does not match its hash"}
	}
	if e.PrevHash != v.LastHash {
		return &AuditChainError{Seq: e.Seq, Kind: AuditDeleted,
			Detail: fmt.Sprintf("its prev_hash does not match the hash of seq %d: an entry before it was deleted or replaced", v.LastSeq)}
	}
	v.Count++
	v.LastSeq, v.LastHash = e.Seq, e.Hash
	return nil
}
