package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/mdmd/mdmd"
)

// BenchmarkColdStart is a first start on an empty data directory (keys,
// CA, signer and administrator generated) until the API is served.
func BenchmarkColdStart(b *testing.B) {
	for b.Loop() {
		ts := start(b, "--data-dir", b.TempDir(), "--log-level", "error")
		ts.stop()
	}
}

// BenchmarkWarmStart is a restart on an existing SQLite data directory.
func BenchmarkWarmStart(b *testing.B) {
	dir := b.TempDir()
	start(b, "--data-dir", dir).stop()
	for b.Loop() {
		ts := start(b, "--data-dir", dir, "--log-level", "error")
		ts.stop()
	}
}

// BenchmarkAPIListDevices is an authenticated GET of 100 devices through
// the whole stack (HTTP, token check, query, JSON) on a 2,000-device fleet.
func BenchmarkAPIListDevices(b *testing.B) {
	for _, be := range backendsB(b) {
		// The server is set up once: RunParallel benchmarks run their
		// function several times.
		ts := start(b, "--data-dir", b.TempDir(), "--database-url", be.URL, "--log-level", "error")
		st, ctx := ts.srv.Store(), context.Background()
		for i := 0; i < 2000; i++ {
			udid := fmt.Sprintf("U%06d", i)
			if err := st.CreateDevice(ctx, &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(be.Name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", ts.URL+"/api/v1/devices?limit=100&platform=ios", nil)
			req.Header.Set("Authorization", "Bearer "+ts.Token)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatal(resp.Status)
					}
				}
			})
		})
	}
}
