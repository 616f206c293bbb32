package compliance_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

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
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("MDMD_BENCH_DEVICES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	st := storagetest.Open(b, url, storage.Options{})
	pol := compliance.Policy{MinOSVersion: "17", MaxPatchAgeDays: 90, BlockCompromised: true, RequirePasscode: true,
		RequireEncryption: true, CheckInValidityDays: 7, GraceDays: 3}
	if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "baseline", Rules: policyJSON(b, pol), IsDefault: true}); err != nil {
		b.Fatal(err)
	}
	// Seed in SQL: a fleet through the API would take far longer than the sweep.
	now := time.Now().UTC()
	seed := []string{
		`INSERT INTO devices (id, platform, name, udid, amapi_name, ownership, enrollment_state, owner_user, last_seen_at, created_at, updated_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END, 'device ' || i,
       CASE WHEN i % 2 = 0 THEN 'udid-' || i END, CASE WHEN i % 2 = 1 THEN 'enterprises/E/devices/' || i END,
       'corporate', 'enrolled', 'user' || (i % 5000) || '@example.com', $1::timestamptz - (i % 10) * interval '1 day', $1, $1
FROM generate_series(1, $2) AS i`,
		`INSERT INTO device_postures (device_id, os_version, security_patch, passcode_present, passcode_compliant, encrypted, compromised, details, observed_at, updated_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 7 = 0 THEN '16.4' ELSE '18.1' END, '2026-10-01', i % 11 <> 0, true, true, i % 13 = 0,
       '{"device_posture":"SECURE"}', $1, $1
FROM generate_series(1, $2) AS i`,
	}
	for _, q := range seed {
		if _, err := st.DB().ExecContext(ctx, q, now, n); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.DB().ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if got, err := svc.Sweep(ctx); err != nil || got != n { // the first sweep creates every state
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
