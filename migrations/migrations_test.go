package migrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/mdmd/mdmd/migrations"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// TestConcurrentUp starts several migrators on one fresh database at once:
// exactly one applies each migration and none fails.
func TestConcurrentUp(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			const n = 4
			var wg sync.WaitGroup
			applied := make([][]int64, n)
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				st, err := storage.Open(ctx, b.URL, storage.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					applied[i], errs[i] = st.Migrate(ctx, nil)
				}()
			}
			wg.Wait()
			total := 0
			for i := range errs {
				if errs[i] != nil {
					t.Fatalf("migrator %d: %v", i, errs[i])
				}
				total += len(applied[i])
			}
			files, _ := migrations.FS(migrations.Dialect(b.Name))
			entries, _ := fsReadDir(files)
			if total != entries {
				t.Fatalf("%d migrations applied in all, want %d (each once)", total, entries)
			}
			st, _ := storage.Open(ctx, b.URL, storage.Options{})
			defer st.Close()
			cur, pending, err := migrations.Status(ctx, st.DB(), migrations.Dialect(b.Name))
			if err != nil || pending || cur != int64(entries) {
				t.Fatalf("status: version %d, pending %v, %v", cur, pending, err)
			}
		})
	}
}

// TestDialectsMatch keeps the two dialects' migrations in step.
func TestDialectsMatch(t *testing.T) {
	pg, _ := migrations.FS(migrations.Postgres)
	lite, _ := migrations.FS(migrations.SQLite)
	a, _ := names(pg)
	b, _ := names(lite)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("postgres has %v, sqlite has %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("migration %d: postgres %s, sqlite %s", i, a[i], b[i])
		}
	}
	if _, err := migrations.FS("mysql"); err == nil {
		t.Fatal("unknown dialect accepted")
	}
}
