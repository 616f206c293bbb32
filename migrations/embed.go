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
	"github.com/pressly/goose/v3/lock"
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

// Up applies every pending migration and returns the versions it applied.
// On PostgreSQL a session-level advisory lock serialises replicas that
// start at the same time; SQLite serialises writers by itself.
func Up(ctx context.Context, db *sql.DB, d Dialect, log *slog.Logger) ([]int64, error) {
	p, err := provider(db, d)
	if err != nil {
		return nil, err
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
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	gd := goose.DialectSQLite3
	if d == Postgres {
		gd = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(gd, db, sub, opts...)
}
