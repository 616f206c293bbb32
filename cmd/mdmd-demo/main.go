// Command mdmd-demo runs mdmd on the embedded default with a fake APNs, a
// fake Android Management API and a simulated fleet with mixed posture.
//
//	go run ./cmd/mdmd-demo
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mdmd/mdmd/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mdmd-demo:", err)
		os.Exit(1)
	}
}
