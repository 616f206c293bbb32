// Command mdmctl is the mdmd command-line client. Run "mdmctl" for usage.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/mdmd/mdmd/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "mdmctl:", err)
		os.Exit(1)
	}
}
