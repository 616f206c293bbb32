package storage_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// BenchmarkConsoleDeviceList measures one page of the console's device
// list (50 devices with their compliance state, plus the filter's total)
// on PostgreSQL with 100,000 devices (MDMD_BENCH_DEVICES), for the filters
// the console offers. One op is one page as the console serves it.
//
//	MDMD_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench ConsoleDeviceList ./storage/
func BenchmarkConsoleDeviceList(b *testing.B) {
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
	now := time.Now().UTC()
	seed := []string{
		`INSERT INTO devices (id, platform, name, udid, amapi_name, ownership, enrollment_state, owner_user, model, last_seen_at, created_at, updated_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END, 'device ' || md5(i::text),
       CASE WHEN i % 2 = 0 THEN 'udid-' || i END, CASE WHEN i % 2 = 1 THEN 'enterprises/E/devices/' || i END,
       CASE WHEN i % 3 = 0 THEN 'personal' ELSE 'corporate' END, 'enrolled', 'user' || (i % 5000) || '@example.com',
       'model ' || (i % 20), $1::timestamptz - (i % 10) * interval '1 day', $1, $1
FROM generate_series(1, $2) AS i`,
		`INSERT INTO device_compliance (device_id, state, rules, evaluated_at, changed_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 10 = 0 THEN 'noncompliant' WHEN i % 97 = 0 THEN 'in_grace' ELSE 'compliant' END,
       '[]', $1::timestamptz, $1::timestamptz
FROM generate_series(1, $2) AS i WHERE i % 50 <> 0`,
		`INSERT INTO groups (id, name, created_at, updated_at) VALUES ('g1', 'finance', $1, $1)`,
		`INSERT INTO device_groups (group_id, device_id) SELECT 'g1', 'dev-' || lpad(i::text, 7, '0') FROM generate_series(1, $2::int) AS i WHERE i % 7 = 0 AND $1::timestamptz IS NOT NULL`,
	}
	for _, q := range seed {
		args := []any{now, n}
		if q[:19] == "INSERT INTO groups " {
			args = args[:1]
		}
		if _, err := st.DB().ExecContext(ctx, q, args...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.DB().ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	filters := map[string]mdmd.ConsoleDeviceFilter{
		"all":                  {},
		"noncompliant":         {ComplianceState: "noncompliant"},
		"noncompliant-ios":     {ComplianceState: "noncompliant", DeviceFilter: mdmd.DeviceFilter{Platform: mdmd.PlatformIOS}},
		"not-evaluated":        {ComplianceState: mdmd.NotEvaluated},
		"group-personal":       {DeviceFilter: mdmd.DeviceFilter{GroupID: "g1", Ownership: mdmd.OwnershipPersonal}},
		"owner":                {DeviceFilter: mdmd.DeviceFilter{OwnerUser: "user42@example.com"}},
		"search":               {DeviceFilter: mdmd.DeviceFilter{Query: "model 7"}},
		"by-name":              {Sort: mdmd.SortName},
		"newest-noncompliant":  {Sort: mdmd.SortNewest, ComplianceState: "noncompliant"},
		"by-name-page-1000":    {Sort: mdmd.SortName},
		"noncompliant-page-50": {ComplianceState: "noncompliant"},
	}
	for name, f := range filters {
		f.Limit = 50
		if name == "by-name-page-1000" || name == "noncompliant-page-50" {
			// A deep page: keyset pagination costs the same at any depth.
			pages := 1000
			if name == "noncompliant-page-50" {
				pages = 50
			}
			for i := 0; i < pages && (i == 0 || f.After != ""); i++ {
				_, next, err := st.ConsoleListDevices(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				f.After = next
			}
		}
		b.Run(name, func(b *testing.B) {
			var worst time.Duration
			for b.Loop() {
				start := time.Now()
				devs, _, err := st.ConsoleListDevices(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := st.ConsoleCountDevices(ctx, f); err != nil {
					b.Fatal(err)
				}
				if len(devs) == 0 {
					b.Fatal("empty page")
				}
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}
