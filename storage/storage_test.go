package storage_test

import (
	"testing"

	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// TestConformance runs the storage suite against every backend: SQLite
// always, PostgreSQL when MDMD_TEST_DATABASE_URL is set.
func TestConformance(t *testing.T) {
	for _, b := range []string{"sqlite", "postgres"} {
		t.Run(b, func(t *testing.T) {
			if b == "postgres" && storagetest.PostgresURL(t) == "" {
				t.Skip("MDMD_TEST_DATABASE_URL not set")
			}
			storagetest.Run(t, func(t *testing.T) *storage.Store {
				url := storagetest.SQLiteURL(t)
				if b == "postgres" {
					url = storagetest.PostgresURL(t)
				}
				return storagetest.Open(t, url, storage.Options{})
			})
		})
	}
}
