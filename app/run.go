// Package app assembles mdmd: configuration, the server composition, and
// the subcommands that cmd/mdmd runs.
package app

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/mdmd/mdmd/storage"
)

// Version is set at build time with -ldflags "-X github.com/mdmd/mdmd/app.Version=...".
var Version = "dev"

const usage = `mdmd — mobile device management for iPhone and Android fleets

Usage:
  mdmd serve [flags]     run the server (the default when no command is given)
  mdmd migrate [flags]   apply database migrations and exit
  mdmd audit verify      check the audit log's hash chain (edited, deleted or reordered entries)
  mdmd audit export      write the audit log as JSON Lines (--since, --until)
  mdmd version           print the version

Run "mdmd serve -h" for every setting; each flag has an MDMD_* variable.
`

// Run runs the mdmd command line with args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := ParseConfig("mdmd serve", args, os.Getenv, stderr)
		if err != nil {
			return err
		}
		return NewServer(cfg, stdout, stderr).Run(ctx)
	case "migrate":
		cfg, err := ParseConfig("mdmd migrate", args, os.Getenv, stderr)
		if err != nil {
			return err
		}
		return migrate(ctx, cfg, stdout, stderr)
	case "audit":
		return auditCommand(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "mdmd", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func migrate(ctx context.Context, cfg *Config, stdout, stderr io.Writer) error {
	st, err := storage.Open(ctx, cfg.DatabaseURL, storage.Options{MaxOpenConns: 3})
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx, cfg.logger(stderr).With("component", "storage"))
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %d\n", v)
	}
	return nil
}
