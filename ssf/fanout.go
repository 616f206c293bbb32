package ssf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// EventConsumer is the transmitter's cursor in the device event log.
const EventConsumer = "ssf"

const fanoutBatch = 500

// setClaims are a SET's claims (RFC 8417 §2.2, SSF §4.1). There is no
// sub and no exp.
type setClaims struct {
	Iss    string          `json:"iss"`
	Aud    json.RawMessage `json:"aud"`
	Iat    int64           `json:"iat"`
	Jti    string          `json:"jti"`
	Txn    string          `json:"txn,omitempty"`
	SubID  any             `json:"sub_id"`
	Events map[string]any  `json:"events"`
}

// The CAEP event payloads.
type (
	deviceComplianceChange struct {
		PreviousStatus   string            `json:"previous_status"`
		CurrentStatus    string            `json:"current_status"`
		EventTimestamp   int64             `json:"event_timestamp"`
		InitiatingEntity string            `json:"initiating_entity"`
		ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
	}
	riskLevelChange struct {
		Principal        string            `json:"principal"`
		CurrentLevel     string            `json:"current_level"`
		PreviousLevel    string            `json:"previous_level,omitempty"`
		RiskReason       string            `json:"risk_reason,omitempty"`
		EventTimestamp   int64             `json:"event_timestamp"`
		InitiatingEntity string            `json:"initiating_entity"`
		ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
	}
)

// CAEP compliance statuses.
const (
	statusCompliant    = "compliant"
	statusNotCompliant = "not-compliant"
)

// caepStatus maps an mdmd compliance state to CAEP. A device in its grace
// period is still trusted, so it is compliant until the grace ends; one
// never evaluated (or whose evaluation failed) is not, under zero trust.
func caepStatus(state string) string {
	switch state {
	case "compliant", "in_grace":
		return statusCompliant
	}
	return statusNotCompliant
}

// caepLevel maps an MTD threat level to CAEP's risk levels. "secured"
// (the partner found nothing) is LOW, the lowest level CAEP has; "" (no
// report yet) is unknown.
func caepLevel(level string) string {
	switch level {
	case "secured", "low":
		return "LOW"
	case "medium":
		return "MEDIUM"
	case "high":
		return "HIGH"
	}
	return ""
}

// signal is one event of the log as a CAEP event.
type signal struct {
	seq    int64
	uri    string
	device mdmd.EventDevice
	user   string // lower case
	event  any
}

// signalOf maps a log event to a CAEP event, or reports that it sends
// none: events of other types, and changes that CAEP cannot tell apart
// (in_grace to compliant, secured to low).
func signalOf(ev mdmd.Event) (signal, bool) {
	switch ev.Type {
	case mdmd.EventComplianceChanged:
		var d mdmd.ComplianceChangedData
		if json.Unmarshal(ev.Data, &d) != nil {
			return signal{}, false
		}
		prev, cur := caepStatus(d.PreviousState), caepStatus(d.CurrentState)
		if prev == cur {
			return signal{}, false
		}
		at := d.EvaluatedAt
		if at.IsZero() {
			at = ev.At
		}
		reason := d.Reason
		if len(d.FailedRules) > 0 {
			reason = strings.TrimSpace(reason + " (failed rules: " + strings.Join(d.FailedRules, ", ") + ")")
		}
		e := deviceComplianceChange{PreviousStatus: prev, CurrentStatus: cur, EventTimestamp: at.Unix(), InitiatingEntity: "policy"}
		if reason != "" {
			e.ReasonAdmin = map[string]string{"en": reason}
		}
		return signal{seq: ev.Seq, uri: EventDeviceComplianceChange, device: deviceOf(ev, d.EventDevice), event: e}, true
	case mdmd.EventThreatChanged:
		var d mdmd.ThreatChangedData
		if json.Unmarshal(ev.Data, &d) != nil {
			return signal{}, false
		}
		prev, cur := caepLevel(d.PreviousLevel), caepLevel(d.CurrentLevel)
		if cur == "" || prev == cur {
			return signal{}, false
		}
		at := d.ReportedAt
		if at.IsZero() {
			at = ev.At
		}
		e := riskLevelChange{Principal: "DEVICE", CurrentLevel: cur, PreviousLevel: prev, RiskReason: "MTD_THREAT_LEVEL_" + strings.ToUpper(d.CurrentLevel),
			EventTimestamp: at.Unix(), InitiatingEntity: "system"}
		if d.Source != "" {
			e.ReasonAdmin = map[string]string{"en": fmt.Sprintf("Mobile threat defense partner %s reported threat level %s", d.Source, d.CurrentLevel)}
		}
		return signal{seq: ev.Seq, uri: EventRiskLevelChange, device: deviceOf(ev, d.EventDevice), event: e}, true
	}
	return signal{}, false
}

func deviceOf(ev mdmd.Event, d mdmd.EventDevice) mdmd.EventDevice {
	if d.DeviceID == "" {
		d.DeviceID = ev.DeviceID
	}
	return d
}

// txn is the SET "txn" of a log event: the same on every stream the
// event goes to, unique to the event, and revealing nothing of the log.
func (t *Transmitter) txn(seq int64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "mdmd ssf txn %s %d", t.issuer, seq))
	return hex.EncodeToString(sum[:16])
}

// Fanout queues a SET on every stream that takes each new event of the
// device event log and returns how many events it read. Each event is
// read once, whatever the number of replicas.
func (t *Transmitter) Fanout(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := t.st.ConsumeEvents(ctx, EventConsumer, fanoutBatch, func(tx *storage.Store, evs []mdmd.Event) error {
			return t.fanout(ctx, tx, evs)
		})
		total += n
		if err != nil || n < fanoutBatch {
			if total > 0 {
				t.Wake()
			}
			return total, err
		}
	}
}

func (t *Transmitter) fanout(ctx context.Context, tx *storage.Store, evs []mdmd.Event) error {
	streams, err := tx.SSFFanoutStreams(ctx)
	if err != nil || len(streams) == 0 {
		return err
	}
	var sigs []signal
	var devices, users, ids []string
	for _, ev := range evs {
		s, ok := signalOf(ev)
		if !ok || s.device.DeviceID == "" {
			continue
		}
		s.user = strings.ToLower(s.device.OwnerUser)
		sigs = append(sigs, s)
		devices = append(devices, s.device.DeviceID)
		if s.user != "" {
			users = append(users, s.user)
		}
	}
	if len(sigs) == 0 {
		return nil
	}
	for _, st := range streams {
		ids = append(ids, st.ID)
	}
	rows, err := tx.MatchSSFSubjects(ctx, ids, dedupe(devices), dedupe(users))
	if err != nil {
		return err
	}
	byStream := map[string][]mdmd.SSFSubject{}
	for _, r := range rows {
		byStream[r.StreamID] = append(byStream[r.StreamID], r)
	}
	delivered := map[string][]string{}
	for _, st := range streams {
		var evs []string
		_ = json.Unmarshal(st.EventsDelivered, &evs)
		delivered[st.ID] = evs
	}
	iat := t.opt.Now().Unix()
	var sets []mdmd.SSFSet
	for _, s := range sigs {
		for _, st := range streams {
			if !slices.Contains(delivered[st.ID], s.uri) {
				continue
			}
			hit := slices.ContainsFunc(byStream[st.ID], func(r mdmd.SSFSubject) bool { return matches(r, s.device.DeviceID, s.user) })
			if hit == st.AllSubjects { // on an all-subjects stream the rows are exclusions
				continue
			}
			subID, ok := t.subID(st.SubjectFormat, s.device)
			if !ok {
				continue
			}
			c := setClaims{Iss: t.issuer, Aud: json.RawMessage(st.Aud), Iat: iat, Jti: newJTI(), Txn: t.txn(s.seq),
				SubID: subID, Events: map[string]any{s.uri: s.event}}
			raw, err := json.Marshal(c)
			if err != nil {
				return err
			}
			sets = append(sets, mdmd.SSFSet{JTI: c.Jti, StreamID: st.ID, EventType: s.uri, SubjectKey: s.device.DeviceID, Claims: raw})
		}
	}
	return tx.EnqueueSSFSets(ctx, sets)
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// controlSET builds a SET about the stream itself (verification,
// stream-updated): its sub_id is the stream (SSF §8.1.4.1, §8.1.5).
func (t *Transmitter) controlSET(st *mdmd.SSFStream, uri string, event any) (*mdmd.SSFSet, error) {
	c := setClaims{Iss: t.issuer, Aud: json.RawMessage(st.Aud), Iat: t.opt.Now().Unix(), Jti: newJTI(),
		SubID: opaqueID{Format: "opaque", ID: st.ID}, Events: map[string]any{uri: event}}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return &mdmd.SSFSet{JTI: c.Jti, StreamID: st.ID, EventType: uri, SubjectKey: st.ID, Claims: raw}, nil
}
