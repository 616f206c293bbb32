package android

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/googleapi"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/secret"
)

// CommandStore is what Android commands need from storage.
type CommandStore interface {
	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	UpdateDevice(ctx context.Context, id string, u mdmd.DeviceUpdate) (*mdmd.Device, error)
	GetAndroidDevice(ctx context.Context, deviceID string) (*mdmd.AndroidDevice, error)
	EnqueueCommand(ctx context.Context, c *mdmd.Command) error
	GetCommand(ctx context.Context, id string) (*mdmd.Command, error)
	MarkCommandSent(ctx context.Context, id, externalID string) (*mdmd.Command, error)
	GetCommandByExternalID(ctx context.Context, externalID string) (*mdmd.Command, error)
	FinishCommand(ctx context.Context, id string, r mdmd.CommandResult) (*mdmd.Command, error)
	PendingExternalCommands(ctx context.Context, olderThan time.Duration, limit int) ([]mdmd.Command, error)
}

// JobQueue queues durable background work.
type JobQueue interface {
	Enqueue(ctx context.Context, j *mdmd.Job) (bool, error)
}

// CommandJob is the job kind that sends one command to AMAPI.
const CommandJob = "android.command"

// Command types mdmd sends. DELETE is devices.delete (a wipe), not an
// issueCommand type.
const (
	CmdLock          = "LOCK"
	CmdResetPassword = "RESET_PASSWORD"
	CmdReboot        = "REBOOT"
	CmdStartLostMode = "START_LOST_MODE"
	CmdStopLostMode  = "STOP_LOST_MODE"
	CmdRelinquish    = "RELINQUISH_OWNERSHIP"
	CmdDelete        = "DELETE"
)

// CommandDuration is how long AMAPI keeps a command for an offline device
// (its default, 10 minutes, loses commands to phones that are off).
const CommandDuration = 7 * 24 * time.Hour

// Command is an Android command as mdmd queues it.
type Command struct {
	Type               string                  `json:"type"`
	NewPassword        string                  `json:"new_password,omitempty"`
	ResetPasswordFlags []string                `json:"reset_password_flags,omitempty"`
	LostMode           *am.StartLostModeParams `json:"lost_mode,omitempty"`
	WipeDataFlags      []string                `json:"wipe_data_flags,omitempty"`
	WipeReason         string                  `json:"wipe_reason,omitempty"`
	// Full marks a DELETE of a company-owned device (a factory reset).
	Full bool `json:"full,omitempty"`
}

var resetFlags = map[string]bool{"REQUIRE_ENTRY": true, "DO_NOT_ASK_CREDENTIALS_ON_BOOT": true, "LOCK_NOW": true}
var wipeFlags = map[string]bool{"PRESERVE_RESET_PROTECTION_DATA": true, "WIPE_EXTERNAL_STORAGE": true, "WIPE_ESIMS": true}

func (c *Command) validate() error {
	switch c.Type {
	case CmdLock, CmdReboot, CmdStopLostMode, CmdRelinquish:
	case CmdResetPassword:
		if len(c.NewPassword) > 0 && len(c.NewPassword) < 4 || len(c.NewPassword) > 64 {
			return mdmd.FieldError("new_password", "empty (remove the password) or 4 to 64 characters")
		}
		for _, f := range c.ResetPasswordFlags {
			if !resetFlags[f] {
				return mdmd.FieldError("flags", "unknown flag %q", f)
			}
		}
	case CmdStartLostMode:
		if c.LostMode == nil || c.LostMode.LostMessage == nil || c.LostMode.LostMessage.DefaultMessage == "" {
			return mdmd.FieldError("message", "lost mode needs a message")
		}
	case CmdDelete:
		if len(c.WipeReason) > 200 {
			return mdmd.FieldError("reason", "at most 200 characters (AMAPI shows it on the device)")
		}
		for _, f := range c.WipeDataFlags {
			if !wipeFlags[f] {
				return mdmd.FieldError("wipe_data_flags", "unknown flag %q", f)
			}
		}
	default:
		return mdmd.FieldError("type", "unknown Android command %q", c.Type)
	}
	return nil
}

// Commands sends Android commands through a durable, rate-limited queue.
type Commands struct {
	st   CommandStore
	svc  *Service
	jobs JobQueue
	box  *secret.Box
}

// NewCommands returns the command sender; it shares svc's rate limit.
func NewCommands(st CommandStore, svc *Service, jobsQ JobQueue, box *secret.Box) *Commands {
	return &Commands{st: st, svc: svc, jobs: jobsQ, box: box}
}

// Enqueue queues a command for an enrolled Android device and the job that
// sends it. A password is sealed in the stored command.
func (c *Commands) Enqueue(ctx context.Context, deviceID, by string, cmd Command) (*mdmd.Command, error) {
	if err := cmd.validate(); err != nil {
		return nil, err
	}
	d, err := c.st.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if d.Platform != mdmd.PlatformAndroid || d.EnrollmentState != mdmd.EnrollmentEnrolled {
		return nil, mdmd.Errorf(mdmd.EConflict, "device is not an enrolled Android device")
	}
	ad, err := c.st.GetAndroidDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	switch {
	case cmd.Type == CmdReboot && ad.ManagementMode != "DEVICE_OWNER":
		return nil, mdmd.Errorf(mdmd.EConflict, "REBOOT needs a fully managed device")
	case cmd.Type == CmdRelinquish && !(ad.AMAPIOwnership == "COMPANY_OWNED" && ad.ManagementMode == "PROFILE_OWNER"):
		return nil, mdmd.Errorf(mdmd.EConflict, "RELINQUISH_OWNERSHIP needs a company-owned device with a work profile")
	case (cmd.Type == CmdStartLostMode || cmd.Type == CmdStopLostMode) && ad.AMAPIOwnership != "COMPANY_OWNED":
		return nil, mdmd.Errorf(mdmd.EConflict, "lost mode needs a company-owned device")
	}
	if cmd.Type == CmdDelete {
		cmd.Full = ad.AMAPIOwnership == "COMPANY_OWNED" // deleting a company device is a factory reset
	}
	row := &mdmd.Command{ID: strings.ToUpper(newID()), DeviceID: deviceID, RequestType: cmd.Type, CreatedBy: by}
	payload, _ := json.Marshal(cmd)
	if cmd.NewPassword != "" {
		if payload, err = c.box.Seal(payload, "command:"+row.ID); err != nil {
			return nil, err
		}
	}
	row.Payload = payload
	if err := c.st.EnqueueCommand(ctx, row); err != nil {
		return nil, err
	}
	jp, _ := json.Marshal(map[string]string{"command_id": row.ID})
	// Many attempts: an AMAPI outage delays a command, it never loses it.
	if _, err := c.jobs.Enqueue(ctx, &mdmd.Job{Kind: CommandJob, Payload: jp, MaxAttempts: 1000}); err != nil {
		return nil, err
	}
	return row, nil
}

// RunJob sends one queued command to AMAPI, within the rate limit. A 429
// is retried after at least 60 s with jitter, 5xx and network failures with
// backoff; AMAPI refusing the command (4xx) finishes it with an error.
func (c *Commands) RunJob(ctx context.Context, j *mdmd.Job) error {
	var p struct {
		CommandID string `json:"command_id"`
	}
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return err
	}
	row, err := c.st.GetCommand(ctx, p.CommandID)
	if err != nil {
		return err
	}
	if row.Status != mdmd.CommandQueued {
		return nil // sent already (a retried job) or canceled: never twice
	}
	raw := row.Payload
	if secret.IsSealed(raw) {
		if raw, err = c.box.Open(raw, "command:"+row.ID); err != nil {
			return err
		}
	}
	var cmd Command
	if err := json.Unmarshal(raw, &cmd); err != nil {
		return err
	}
	ad, err := c.st.GetAndroidDevice(ctx, row.DeviceID)
	if err != nil {
		return err
	}
	ok, next, err := c.svc.take(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return jobs.RetryAfter(errors.New("AMAPI client-side rate limit"), next.Add(time.Duration(mrand.Int64N(int64(time.Second)))))
	}
	client, err := c.svc.Client(ctx)
	if err != nil {
		return err
	}
	// From here on shutdown does not interrupt: a call AMAPI has carried
	// out must be recorded, or the retry after a restart would send the
	// command twice.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if cmd.Type == CmdDelete {
		call := client.Enterprises.Devices.Delete(ad.AMAPIName).WipeReasonMessage(cmd.WipeReason).Context(ctx)
		if len(cmd.WipeDataFlags) > 0 {
			call = call.WipeDataFlags(cmd.WipeDataFlags...)
		}
		if _, err := call.Do(); err != nil {
			return c.callFailed(ctx, row, err)
		}
		if _, err := c.st.FinishCommand(ctx, row.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged}); err != nil {
			return err
		}
		state := mdmd.EnrollmentUnenrolled
		if cmd.Full {
			state = mdmd.EnrollmentWiped
		}
		_, err := c.st.UpdateDevice(ctx, row.DeviceID, mdmd.DeviceUpdate{EnrollmentState: &state})
		return err
	}
	req := &am.Command{Type: cmd.Type, Duration: fmt.Sprintf("%ds", int(CommandDuration.Seconds())), NewPassword: cmd.NewPassword,
		ResetPasswordFlags: cmd.ResetPasswordFlags, StartLostModeParams: cmd.LostMode}
	if cmd.Type == CmdStopLostMode {
		req.StopLostModeParams = &am.StopLostModeParams{}
	}
	op, err := client.Enterprises.Devices.IssueCommand(ad.AMAPIName, req).Context(ctx).Do()
	if err != nil {
		return c.callFailed(ctx, row, err)
	}
	if _, err := c.st.MarkCommandSent(ctx, row.ID, op.Name); err != nil {
		return err
	}
	if op.Done {
		return c.ApplyOperation(ctx, op)
	}
	return nil
}

func (c *Commands) callFailed(ctx context.Context, row *mdmd.Command, err error) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch {
		case ge.Code == 429:
			return jobs.RetryAfter(err, time.Now().Add(60*time.Second+time.Duration(mrand.Int64N(int64(30*time.Second)))))
		case ge.Code >= 400 && ge.Code < 500 && ge.Code != 408:
			_, ferr := c.st.FinishCommand(ctx, row.ID, mdmd.CommandResult{Status: mdmd.CommandError,
				Error: fmt.Sprintf("AMAPI refused the command: %d %s", ge.Code, ge.Message)})
			return ferr
		}
	}
	return err // 5xx, network: retried with backoff
}

// ApplyOperation records the outcome of a finished AMAPI operation (a
// COMMAND notification or operations.get). An unfinished one changes
// nothing; one for no mdmd command is not found.
func (c *Commands) ApplyOperation(ctx context.Context, op *am.Operation) error {
	if !op.Done {
		return nil
	}
	row, err := c.st.GetCommandByExternalID(ctx, op.Name)
	if err != nil {
		return err
	}
	var meta am.Command
	_ = json.Unmarshal(op.Metadata, &meta)
	raw := []byte(op.Metadata)
	if meta.NewPassword != "" {
		// AMAPI echoes the command; the password is not kept.
		var m map[string]any
		if json.Unmarshal(op.Metadata, &m) == nil {
			delete(m, "newPassword")
			raw, _ = json.Marshal(m)
		}
	}
	res := mdmd.CommandResult{Status: mdmd.CommandAcknowledged, Raw: raw}
	if op.Error != nil || meta.ErrorCode != "" {
		res.Status = mdmd.CommandError
		res.Error = strings.TrimSpace(meta.ErrorCode)
		if op.Error != nil {
			res.Error = strings.TrimSpace(res.Error + " " + op.Error.Message)
		}
	}
	_, err = c.st.FinishCommand(ctx, row.ID, res)
	if mdmd.IsCode(err, mdmd.EConflict) {
		return nil // already recorded (a redelivered notification)
	}
	return err
}

// ReconcileJob is the job kind that asks AMAPI about commands whose
// result has not arrived.
const ReconcileJob = "android.reconcile_operations"

// ReconcileOperations asks AMAPI about commands sent more than a few
// minutes ago and still without a result (a missed notification).
func (c *Commands) ReconcileOperations(ctx context.Context, _ *mdmd.Job) error {
	pending, err := c.st.PendingExternalCommands(ctx, 2*time.Minute, 200)
	if err != nil || len(pending) == 0 {
		return err
	}
	client, err := c.svc.Client(ctx)
	if err != nil {
		return err
	}
	for _, row := range pending {
		ok, _, err := c.svc.take(ctx)
		if err != nil || !ok {
			return err // the next run continues
		}
		op, err := client.Enterprises.Devices.Operations.Get(*row.ExternalID).Context(ctx).Do()
		switch {
		case mdmd.IsCode(amapiErr(err), mdmd.ENotFound) || (err == nil && !op.Done && row.SentAt != nil && time.Since(*row.SentAt) > CommandDuration):
			// The operation is gone (the device was deleted) or expired
			// unfinished: the command will never complete.
			if _, ferr := c.st.FinishCommand(ctx, row.ID, mdmd.CommandResult{Status: mdmd.CommandError,
				Error: "the command expired or its device left the enterprise before carrying it out"}); ferr != nil && !mdmd.IsCode(ferr, mdmd.EConflict) {
				return ferr
			}
			continue
		case mdmd.IsCode(amapiErr(err), mdmd.ERateLimited):
			return nil // the next run continues
		case err != nil:
			continue
		}
		if err := c.ApplyOperation(ctx, op); err != nil {
			return err
		}
	}
	return nil
}
