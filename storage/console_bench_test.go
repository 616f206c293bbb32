package storage_test

import (
	"context"
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
	n := storagetest.FleetSize(100_000)
	ctx := context.Background()
	st := storagetest.Open(b, url, storage.Options{})
	storagetest.SeedFleet(b, st, n)
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
