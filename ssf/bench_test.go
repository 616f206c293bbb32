package ssf_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// BenchmarkPush10k signs and pushes 10,000 SETs to a local receiver on
// PostgreSQL: 10,000 compliance changes of 10,000 devices are fanned out
// to one all-subjects push stream (fanout_s), then signed and POSTed
// until the queue is empty (push_s). Each iteration is the whole 10,000,
// so run it once:
//
//	MDMD_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench Push10k -benchtime 1x ./ssf/
func BenchmarkPush10k(b *testing.B) {
	const n = 10000
	if storagetest.PostgresURL(b) == "" {
		b.Skip("MDMD_TEST_DATABASE_URL not set: the benchmark runs on PostgreSQL")
	}
	var posts atomic.Int64
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Content-Type") != "application/secevent+jwt" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		posts.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rx.Close()

	var fanout, push time.Duration
	for range b.N {
		b.StopTimer()
		e := newEnv(b, storagetest.PostgresURL(b), func(o *ssf.Options) { o.RetryBackoff = nil })
		tok := e.token(mdmd.RoleSSFReceiver)
		var cfg map[string]any
		if code := e.call(tok, "POST", "/api/v1/ssf/streams", map[string]any{"mdmd_default_subjects": "ALL",
			"delivery": map[string]any{"method": "urn:ietf:rfc:8935", "endpoint_url": rx.URL + "/events"}}, &cfg); code != 201 {
			b.Fatalf("create stream: %d", code)
		}
		if err := e.keys.Init(ctx); err != nil {
			b.Fatal(err)
		}
		err := e.st.Tx(ctx, func(tx *storage.Store) error {
			for i := range n {
				d := mdmd.EventDevice{DeviceID: "bench-device-" + strconv.Itoa(i), Platform: mdmd.PlatformIOS, OwnerUser: "user" + strconv.Itoa(i%500) + "@example.com"}
				if err := tx.AppendEvent(ctx, mdmd.EventComplianceChanged, d.DeviceID, mdmd.ComplianceChangedData{EventDevice: d,
					PreviousState: "compliant", CurrentState: "noncompliant", Reason: "old OS", EvaluatedAt: time.Now()}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		start := time.Now()
		read, err := e.tr.Fanout(ctx)
		if err != nil || read != n {
			b.Fatalf("fan-out read %d events: %v", read, err)
		}
		fanout += time.Since(start)
		start = time.Now()
		delivered := 0
		for delivered < n {
			got, err := e.tr.Push(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if got == 0 {
				b.Fatalf("push stalled at %d", delivered)
			}
			delivered += got
		}
		push += time.Since(start)

		b.StopTimer()
		counts, _ := e.st.CountSSFSets(ctx, cfg["stream_id"].(string))
		if counts[mdmd.SETDelivered] != n {
			b.Fatalf("counts = %v", counts)
		}
		b.StartTimer()
	}
	if posts.Load() != int64(n*b.N) {
		b.Fatalf("the receiver got %d POSTs, want %d", posts.Load(), n*b.N)
	}
	b.ReportMetric(fanout.Seconds()/float64(b.N), "fanout_s")
	b.ReportMetric(push.Seconds()/float64(b.N), "push_s")
	b.ReportMetric(float64(n*b.N)/push.Seconds(), "sets/s")
}
