// Package storagetest holds the storage conformance suite and the helpers
// that give every test package its own database on each backend: a fresh
// SQLite file always, and a fresh PostgreSQL schema when
// MDMD_TEST_DATABASE_URL is set (CI always sets it).
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for schema setup

	"github.com/mdmd/mdmd/storage"
)

// EnvPostgres names the variable holding the PostgreSQL URL for tests.
const EnvPostgres = "MDMD_TEST_DATABASE_URL"

// Backend is a database URL that a test may use.
type Backend struct {
	Name string
	URL  string
}

// Backends returns a fresh SQLite database and, when EnvPostgres is set, a
// fresh PostgreSQL schema, both removed when the test ends. Under CI the
// PostgreSQL backend is required, so it can never be skipped silently.
func Backends(t testing.TB) []Backend {
	t.Helper()
	out := []Backend{{Name: "sqlite", URL: SQLiteURL(t)}}
	if u := PostgresURL(t); u != "" {
		out = append(out, Backend{Name: "postgres", URL: u})
	}
	return out
}

// SQLiteURL returns the URL of a new SQLite file in the test's temp dir.
func SQLiteURL(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "mdmd.db")
}

// PostgresURL creates a schema of its own for the test and returns a URL
// whose search_path points at it, or "" when EnvPostgres is unset (outside
// CI). Tests sharing one database never see each other's tables.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s must be set under CI: the storage suite runs on PostgreSQL too", EnvPostgres)
		}
		return ""
	}
	buf := make([]byte, 6)
	rand.Read(buf)
	schema := "mdmd_test_" + hex.EncodeToString(buf)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("postgres at %s: create schema: %v", storage.Redact(base), err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens and migrates a store at the URL and closes it when the test ends.
func Open(t testing.TB, dbURL string, opts storage.Options) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dbURL, opts)
	if err != nil {
		t.Fatalf("open %s: %v", storage.Redact(dbURL), err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(context.Background(), nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}
