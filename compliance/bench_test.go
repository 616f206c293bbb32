package compliance_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// BenchmarkSweep re-evaluates a whole fleet on PostgreSQL: half iPhones,
// half Android devices, each with posture, under a policy with every
// posture rule. MDMD_BENCH_DEVICES sets the fleet size (default 100,000).
// One op is one full sweep; devices/s is reported.
//
//	MDMD_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench Sweep -benchtime 3x ./compliance/
func BenchmarkSweep(b *testing.B) {
	url := storagetest.PostgresURL(b)
	if url == "" {
		b.Skip("needs PostgreSQL (" + storagetest.EnvPostgres + ")")
	}
	n := storagetest.FleetSize(100_000)
	ctx := context.Background()
	st := storagetest.Open(b, url, storage.Options{})
	pol := compliance.Policy{MinOSVersion: "17", MaxPatchAgeDays: 90, BlockCompromised: true, RequirePasscode: true,
		RequireEncryption: true, CheckInValidityDays: 7, GraceDays: 3}
	if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "baseline", Rules: policyJSON(b, pol), IsDefault: true}); err != nil {
		b.Fatal(err)
	}
	storagetest.SeedFleet(b, st, n)
	svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if got, err := svc.Sweep(ctx); err != nil || got != n { // the first sweep brings every state up to date
		b.Fatalf("first sweep: %d, %v", got, err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, err := svc.Sweep(ctx)
		if err != nil || got != n {
			b.Fatalf("sweep: %d, %v", got, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "devices/s")
	var changes int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM compliance_changes").Scan(&changes); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d changes of state", changes)
}
