package storage_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// benchDevices is the fleet size of the storage benchmarks
// (MDMD_BENCH_DEVICES, default 20000).
func benchDevices() int {
	if n, err := strconv.Atoi(os.Getenv("MDMD_BENCH_DEVICES")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// benchStores runs fn on every backend with a seeded fleet: every device
// has one queued command and five finished ones.
func benchStores(b *testing.B, fn func(b *testing.B, st *storage.Store, ids []string)) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			st := storagetest.Open(b, be.URL, storage.Options{})
			ids := seedFleet(b, st, benchDevices())
			b.ResetTimer()
			fn(b, st, ids)
		})
	}
}

func seedFleet(b *testing.B, st *storage.Store, n int) []string {
	ctx := context.Background()
	ids := make([]string, 0, n)
	const batch = 2000
	for start := 0; start < n; start += batch {
		err := st.Tx(ctx, func(tx *storage.Store) error {
			for i := start; i < min(start+batch, n); i++ {
				udid := fmt.Sprintf("UDID-%08d", i)
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: fmt.Sprintf("iPhone %d", i),
					SerialNumber: fmt.Sprintf("SN%08d", i), Model: "iPhone15,2", Ownership: mdmd.OwnershipCorporate,
					EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: fmt.Sprintf("user%d@example.com", i%5000)}
				if err := tx.CreateDevice(ctx, d); err != nil {
					return err
				}
				ids = append(ids, d.ID)
				for k := 0; k < 6; k++ {
					c := &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceInformation", Payload: []byte("<plist/>")}
					if err := tx.EnqueueCommand(ctx, c); err != nil {
						return err
					}
					if k < 5 {
						if _, err := tx.NextCommand(ctx, d.ID, nil); err != nil {
							return err
						}
						if _, err := tx.RecordCommandResult(ctx, d.ID, c.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged}); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

// BenchmarkNextCommand is the queue lookup of a checking-in device.
func BenchmarkNextCommand(b *testing.B) {
	benchStores(b, func(b *testing.B, st *storage.Store, ids []string) {
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			c, err := st.NextCommand(ctx, ids[i%len(ids)], nil)
			if err != nil || c == nil {
				b.Fatal(c, err)
			}
		}
	})
}

// BenchmarkListDevices is one page of a filtered, searched inventory.
func BenchmarkListDevices(b *testing.B) {
	benchStores(b, func(b *testing.B, st *storage.Store, ids []string) {
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if _, _, err := st.ListDevices(ctx, mdmd.DeviceFilter{Platform: mdmd.PlatformIOS, After: ids[i%len(ids)], Limit: 100}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMarkDevicesSeen records last-seen for a batch of 500 devices.
func BenchmarkMarkDevicesSeen(b *testing.B) {
	benchStores(b, func(b *testing.B, st *storage.Store, ids []string) {
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			lo := (i * 500) % (len(ids) - 500)
			if _, err := st.MarkDevicesSeen(ctx, ids[lo:lo+500], time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJobCycle enqueues, claims and completes one job.
func BenchmarkJobCycle(b *testing.B) {
	for _, be := range storagetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			st := storagetest.Open(b, be.URL, storage.Options{})
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				if _, err := st.EnqueueJob(ctx, &mdmd.Job{Kind: "bench"}); err != nil {
					b.Fatal(err)
				}
				owner := fmt.Sprint("w", i)
				got, err := st.ClaimJobs(ctx, owner, []string{"bench"}, 1, time.Minute)
				if err != nil || len(got) != 1 {
					b.Fatal(got, err)
				}
				if err := st.CompleteJob(ctx, got[0].ID, owner); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
