package main

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/mdmd/mdmd/app"
)

// TestMain lets the test binary play mdmd too, as the bench binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__mdmd" {
		if err := app.Run(context.Background(), os.Args[2:], os.Stdout, os.Stderr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchSmoke runs every phase of the bench at a tiny size so that the
// bench keeps working; its figures are not checked.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mdmd in a child process")
	}
	args := []string{"-devices", "4", "-rounds", "2", "-concurrency", "2", "-duration", "300ms", "-push-devices", "20",
		"-android-devices", "5", "-reports", "50", "-android-lock", "5", "-amapi-rate", "100", "-amapi-rate-window", "1s"}
	if u := os.Getenv("MDMD_TEST_DATABASE_URL"); u != "" {
		args = append(args, "-database-url", u)
	}
	flag.CommandLine = flag.NewFlagSet("mdmd-bench", flag.ContinueOnError)
	os.Args = append([]string{"mdmd-bench"}, args...)
	if err := run(); err != nil {
		t.Fatal(err)
	}
}

func TestBusiestSpan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(secs ...float64) []time.Time {
		var out []time.Time
		for _, s := range secs {
			out = append(out, t0.Add(time.Duration(s*float64(time.Second))))
		}
		return out
	}
	tests := []struct {
		name  string
		times []time.Time
		want  int
	}{
		{"none", nil, 0},
		{"one", at(5), 1},
		// Aligned 10 s windows see at most 3 here; the span from 8 s holds 4.
		{"straddles aligned windows", at(1, 8, 9, 11, 12, 25), 4},
		{"span end is exclusive", at(0, 10, 20), 1},
		{"unsorted input", at(12, 1, 11, 9, 8, 25), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := busiestSpan(tt.times, 10*time.Second); got != tt.want {
				t.Errorf("busiestSpan = %d, want %d", got, tt.want)
			}
		})
	}
}
