package storage

import (
	"context"
	"time"

	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// EnqueueJob queues a job. With a UniqueKey that is already taken it
// creates nothing and reports created false, so every replica may enqueue
// the same periodic slot and one job results.
func (s *Store) EnqueueJob(ctx context.Context, j *mdmd.Job) (created bool, err error) {
	if j.MaxAttempts == 0 {
		j.MaxAttempts = 5
	}
	if err := j.Validate(); err != nil {
		return false, err
	}
	if j.ID == "" {
		j.ID = newID()
	}
	now := s.Now()
	if j.RunAt.IsZero() {
		j.RunAt = now
	}
	j.RunAt = j.RunAt.UTC().Truncate(time.Microsecond)
	j.Status, j.Attempts, j.CreatedAt, j.UpdatedAt = mdmd.JobQueued, 0, now, now
	j.LeaseOwner, j.LeaseUntil, j.DoneAt, j.LastError = "", nil, nil, ""
	q := s.table(ctx, "jobs")
	if j.UniqueKey != nil {
		q = q.Clauses(clause.OnConflict{DoNothing: true})
	}
	res := q.Create(j)
	if res.Error != nil {
		return false, dbErr(res.Error, "job")
	}
	return res.RowsAffected == 1, nil
}

// GetJob returns the job with the given ID.
func (s *Store) GetJob(ctx context.Context, id string) (*mdmd.Job, error) {
	var j mdmd.Job
	err := s.table(ctx, "jobs").Where("id = ?", id).Take(&j).Error
	return &j, dbErr(err, "job")
}

// ClaimJobs leases up to n due jobs of the given kinds to owner until now
// plus lease. A job is due when it is queued and its run time has come, or
// when it is running under a lease that ran out (its worker died). On
// PostgreSQL concurrent claimers skip each other's rows (FOR UPDATE SKIP
// LOCKED); SQLite runs the claim as one write transaction. Either way a job
// is held by one owner at a time. owner must be unique per claim: it is the
// fencing token that CompleteJob and FailJob check.
func (s *Store) ClaimJobs(ctx context.Context, owner string, kinds []string, n int, lease time.Duration) ([]mdmd.Job, error) {
	if owner == "" || n <= 0 || len(kinds) == 0 || lease <= 0 {
		return nil, mdmd.FieldError("claim", "owner, kinds, a positive count and a positive lease are required")
	}
	var out []mdmd.Job
	err := s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		// A job whose last permitted attempt died with its worker is dead.
		err := tx.table(ctx, "jobs").
			Where("status = ? AND lease_until < ? AND attempts >= max_attempts AND kind IN ?", mdmd.JobRunning, now, kinds).
			Updates(map[string]any{"status": string(mdmd.JobDead), "last_error": "lease expired on the final attempt",
				"done_at": now, "updated_at": now}).Error
		if err != nil {
			return dbErr(err, "jobs")
		}
		lock := ""
		if tx.dialect == migrations.Postgres {
			lock = " FOR UPDATE SKIP LOCKED"
		}
		sql := `UPDATE jobs SET status = ?, lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
WHERE id IN (SELECT id FROM jobs WHERE kind IN ? AND ((status = ? AND run_at <= ?) OR (status = ? AND lease_until < ?))
ORDER BY run_at, id LIMIT ?` + lock + `)
RETURNING *`
		return dbErr(tx.db.WithContext(ctx).Raw(sql, mdmd.JobRunning, owner, now.Add(lease), now,
			kinds, mdmd.JobQueued, now, mdmd.JobRunning, now, n).Scan(&out).Error, "jobs")
	})
	return out, err
}

// CompleteJob marks a job done. It fails with ELeaseLost when owner no
// longer holds the job's lease.
func (s *Store) CompleteJob(ctx context.Context, id, owner string) error {
	now := s.Now()
	res := s.table(ctx, "jobs").Where("id = ? AND status = ? AND lease_owner = ?", id, mdmd.JobRunning, owner).
		Updates(map[string]any{"status": string(mdmd.JobDone), "done_at": now, "updated_at": now,
			"lease_until": nil, "last_error": ""})
	if res.Error != nil {
		return dbErr(res.Error, "job")
	}
	if res.RowsAffected == 0 {
		return mdmd.Errorf(mdmd.ELeaseLost, "job %s is no longer leased to this worker", id)
	}
	return nil
}

// FailJob records a failed attempt. The job runs again at retryAt, or is
// dead when it has used its attempts. Like CompleteJob it is fenced by owner.
func (s *Store) FailJob(ctx context.Context, id, owner, message string, retryAt time.Time) (*mdmd.Job, error) {
	if len(message) > 2000 {
		message = message[:2000]
	}
	var out *mdmd.Job
	err := s.Tx(ctx, func(tx *Store) error {
		var j mdmd.Job
		err := tx.table(ctx, "jobs").Where("id = ? AND status = ? AND lease_owner = ?", id, mdmd.JobRunning, owner).Take(&j).Error
		if err != nil {
			if mdmd.IsCode(dbErr(err, "job"), mdmd.ENotFound) {
				return mdmd.Errorf(mdmd.ELeaseLost, "job %s is no longer leased to this worker", id)
			}
			return dbErr(err, "job")
		}
		now := tx.Now()
		set := map[string]any{"last_error": message, "updated_at": now, "lease_until": nil, "lease_owner": ""}
		if j.Attempts >= j.MaxAttempts {
			set["status"], set["done_at"] = string(mdmd.JobDead), now
		} else {
			set["status"], set["run_at"] = string(mdmd.JobQueued), retryAt.UTC().Truncate(time.Microsecond)
		}
		// Fenced again: a reclaim between the read and this write wins.
		res := tx.table(ctx, "jobs").Where("id = ? AND status = ? AND lease_owner = ?", id, mdmd.JobRunning, owner).Updates(set)
		if res.Error != nil {
			return dbErr(res.Error, "job")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ELeaseLost, "job %s is no longer leased to this worker", id)
		}
		var e error
		out, e = tx.GetJob(ctx, id)
		return e
	})
	return out, err
}

// PruneJobs deletes finished jobs (done or dead) older than before.
func (s *Store) PruneJobs(ctx context.Context, before time.Time) (int64, error) {
	res := s.table(ctx, "jobs").Where("status IN ? AND done_at < ?",
		[]string{string(mdmd.JobDone), string(mdmd.JobDead)}, before.UTC()).Delete(&mdmd.Job{})
	return res.RowsAffected, dbErr(res.Error, "jobs")
}

// CountJobs counts jobs by status, for metrics.
func (s *Store) CountJobs(ctx context.Context) (map[mdmd.JobStatus]int64, error) {
	var rows []struct {
		Status mdmd.JobStatus
		N      int64
	}
	err := s.table(ctx, "jobs").Select("status, count(*) AS n").Group("status").Scan(&rows).Error
	out := map[mdmd.JobStatus]int64{}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, dbErr(err, "jobs")
}
