// Package migrations holds mdmd's database schema as SQL migrations, one
// directory per dialect, embedded in the binary and applied with goose.
// The schema comes only from here: mdmd never auto-migrates from structs.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Dialect names a supported database.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// FS returns the migrations of one dialect.
func FS(d Dialect) (fs.FS, error) {
	switch d {
	case Postgres, SQLite:
		return fs.Sub(files, string(d))
	}
	return nil, fmt.Errorf("migrations: unknown dialect %q", d)
}

// advisoryLockKey is the PostgreSQL advisory lock held while migrating
// ("mdmdmigr"). It is database-wide, so replicas in one database queue on it.
const advisoryLockKey = 0x6d646d646d696772

// Up applies every pending migration and returns the versions it applied.
// On PostgreSQL it holds a session-level advisory lock for the whole run,
// so replicas that start together migrate one after the other and the
// later ones find nothing to do; the lock is released if the process dies.
// For SQLite the caller serialises processes (storage takes a file lock).
func Up(ctx context.Context, db *sql.DB, d Dialect, log *slog.Logger) ([]int64, error) {
	p, err := provider(db, d)
	if err != nil {
		return nil, err
	}
	if d == Postgres {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", int64(advisoryLockKey)); err != nil {
			return nil, fmt.Errorf("migrations: take advisory lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(advisoryLockKey))
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var applied []int64
	for _, r := range results {
		applied = append(applied, r.Source.Version)
		if log != nil {
			log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
		}
	}
	return applied, nil
}

// Status reports the current schema version and whether migrations are pending.
func Status(ctx context.Context, db *sql.DB, d Dialect) (current int64, pending bool, err error) {
	p, err := provider(db, d)
	if err != nil {
		return 0, false, err
	}
	if current, err = p.GetDBVersion(ctx); err != nil {
		return 0, false, fmt.Errorf("migrations: %w", err)
	}
	pending, err = p.HasPending(ctx)
	return current, pending, err
}

func provider(db *sql.DB, d Dialect) (*goose.Provider, error) {
	sub, err := FS(d)
	if err != nil {
		return nil, err
	}
	gd := goose.DialectSQLite3
	if d == Postgres {
		gd = goose.DialectPostgres
	}
	return goose.NewProvider(gd, db, sub, goose.WithDisableGlobalRegistry(true))
}
