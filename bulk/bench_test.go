package bulk_test

import (
	"context"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// BenchmarkBulkLock locks every iPhone of a fleet of 100,000 devices
// (MDMD_BENCH_DEVICES; half are iPhones) on PostgreSQL: creating the
// action (fixing its device set), sending it (one DeviceLock per device,
// queued in batches with one push job per batch) and reading its
// progress. One op is one whole bulk action.
//
//	MDMD_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench BulkLock -benchtime 3x ./bulk/
func BenchmarkBulkLock(b *testing.B) {
	url := storagetest.PostgresURL(b)
	if url == "" {
		b.Skip("needs PostgreSQL (" + storagetest.EnvPostgres + ")")
	}
	ctx := context.Background()
	st := storagetest.Open(b, url, storage.Options{})
	storagetest.SeedFleet(b, st, storagetest.FleetSize(100_000))
	runner := jobs.New(st, jobs.Options{}) // queues the push jobs; not run here
	svc := bulk.New(st, commands.NewService(st, runner, nil), nil, nil, nil)
	admin := &mdmd.Principal{Type: mdmd.ActorToken, ID: "bench", Name: "bench", Role: mdmd.RoleAdmin}
	var create, send, progress time.Duration
	devices := 0
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		a, err := svc.Create(ctx, admin, bulk.Request{Action: mdmd.BulkLock, Filter: mdmd.BulkFilter{Platform: mdmd.PlatformIOS},
			Params: mdmd.BulkParams{Message: "bench"}})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		n, err := svc.Run(ctx)
		if err != nil || n != a.Total {
			b.Fatalf("sent %d of %d: %v", n, a.Total, err)
		}
		t2 := time.Now()
		s, err := svc.Get(ctx, a.ID)
		if err != nil || s.State != mdmd.BulkDone || s.Progress.Sent != a.Total {
			b.Fatalf("after the run: %+v, %v", s, err)
		}
		create, send, progress = create+t1.Sub(t0), send+t2.Sub(t1), progress+time.Since(t2)
		devices += a.Total
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-ms/op")
	b.ReportMetric(float64(send.Milliseconds())/float64(b.N), "send-ms/op")
	b.ReportMetric(float64(progress.Milliseconds())/float64(b.N), "progress-ms/op")
	b.ReportMetric(float64(devices)/send.Seconds(), "devices/s")
}
