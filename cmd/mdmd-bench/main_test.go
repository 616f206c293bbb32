package main

import (
	"context"
	"flag"
	"os"
	"testing"

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
