package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/web"
)

const auditUsage = `Usage:
  mdmd audit verify [flags]                          walk the audit hash chain and report the first bad entry
  mdmd audit export [--since T] [--until T] [flags]  write the audit log as JSON Lines to stdout

T is an RFC 3339 time (2026-01-02T15:04:05Z) or a date (2026-01-02, UTC).
The flags are mdmd serve's (--database-url, --data-dir, …); run "mdmd serve -h".
`

// auditPage is how many entries verify and export read at a time (a
// variable so that tests cross pages).
var auditPage = mdmd.MaxPageSize

// auditCommand runs "mdmd audit verify|export".
func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, auditUsage)
		if len(args) == 0 {
			return errors.New("mdmd audit: a subcommand (verify or export) is required")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "verify":
		cfg, err := ParseConfig("mdmd audit verify", args, os.Getenv, stderr)
		if err != nil {
			return err
		}
		st, err := storage.Open(ctx, cfg.DatabaseURL, storage.Options{MaxOpenConns: 2})
		if err != nil {
			return err
		}
		defer st.Close()
		return verifyAudit(ctx, st, stdout)
	case "export":
		window, rest, err := timeFlags(args, "since", "until")
		if err != nil {
			return err
		}
		cfg, err := ParseConfig("mdmd audit export", rest, os.Getenv, stderr)
		if err != nil {
			return err
		}
		st, err := storage.Open(ctx, cfg.DatabaseURL, storage.Options{MaxOpenConns: 2})
		if err != nil {
			return err
		}
		defer st.Close()
		bw := bufio.NewWriter(stdout)
		if _, err := exportAudit(ctx, st, bw, window["since"], window["until"], nil); err != nil {
			return err
		}
		return bw.Flush()
	}
	fmt.Fprint(stderr, auditUsage)
	return fmt.Errorf("unknown audit command %q", sub)
}

// auditRanger reads the chain oldest first.
type auditRanger interface {
	AuditRange(ctx context.Context, after int64, limit int) ([]mdmd.AuditEvent, error)
}

// verifyAudit walks the whole chain in pages. It reports the count when
// the chain is intact, and otherwise returns an error naming the first bad
// entry (its seq) and why: edited, deleted or reordered.
func verifyAudit(ctx context.Context, st auditRanger, stdout io.Writer) error {
	var v mdmd.AuditVerifier
	var after int64
	for {
		page, err := st.AuditRange(ctx, after, auditPage)
		if err != nil {
			return err
		}
		for i := range page {
			if bad := v.Next(&page[i]); bad != nil {
				fmt.Fprintf(stdout, "FAIL: %d entries verified before seq %d\n", v.Count, bad.Seq)
				return bad
			}
		}
		if len(page) < auditPage {
			break
		}
		after = page[len(page)-1].Seq
	}
	fmt.Fprintf(stdout, "OK: %d audit entries verified, chain intact (last seq %d, hash %s)\n", v.Count, v.LastSeq, v.LastHash)
	return nil
}

// auditExporter reads the chain oldest first within a time window.
type auditExporter interface {
	AuditRangeBetween(ctx context.Context, after int64, since, until time.Time, limit int) ([]mdmd.AuditEvent, error)
}

// exportAudit writes the entries at or after since and before until
// (either zero for no bound), oldest first, one JSON object per line;
// flush, when set, is called after each page. It returns how many it wrote.
func exportAudit(ctx context.Context, st auditExporter, w io.Writer, since, until time.Time, flush func()) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	var after int64
	for {
		page, err := st.AuditRangeBetween(ctx, after, since, until, auditPage)
		if err != nil {
			return n, err
		}
		for i := range page {
			if err := enc.Encode(&page[i]); err != nil {
				return n, err
			}
			n++
		}
		if flush != nil {
			flush()
		}
		if len(page) < auditPage {
			return n, nil
		}
		after = page[len(page)-1].Seq
	}
}

// timeFlags takes the named time flags (--name T, --name=T, -name T) out
// of args, leaving the rest for ParseConfig.
func timeFlags(args []string, names ...string) (map[string]time.Time, []string, error) {
	out := map[string]time.Time{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		matched := false
		for _, name := range names {
			var val string
			switch {
			case a == "--"+name || a == "-"+name:
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("flag needs an argument: --%s", name)
				}
				i++
				val = args[i]
			case strings.HasPrefix(a, "--"+name+"="), strings.HasPrefix(a, "-"+name+"="):
				val = a[strings.Index(a, "=")+1:]
			default:
				continue
			}
			t, err := parseAuditTime(val)
			if err != nil {
				return nil, nil, fmt.Errorf("invalid --%s %q: %v", name, val, err)
			}
			out[name], matched = t, true
			break
		}
		if !matched {
			rest = append(rest, a)
		}
	}
	return out, rest, nil
}

func parseAuditTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("must be an RFC 3339 time or a date (YYYY-MM-DD)")
}

// auditExportAPI serves GET /api/v1/audit/export: the audit log as JSON
// Lines, streamed a page at a time.
type auditExportAPI struct{ st auditExporter }

func (a auditExportAPI) RegisterAPI(reg web.Registrar) {
	reg.Handle("GET", "/audit/export", mdmd.PermAuditRead, func(w http.ResponseWriter, r *http.Request) error {
		var window [2]time.Time
		for i, name := range []string{"since", "until"} {
			if s := r.URL.Query().Get(name); s != "" {
				t, err := parseAuditTime(s)
				if err != nil {
					return mdmd.FieldError(name, "%v", err)
				}
				window[i] = t
			}
		}
		// The first page is read before the answer starts, so that a
		// database error is still a proper error response.
		if _, err := a.st.AuditRangeBetween(r.Context(), 0, window[0], window[1], 1); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="mdmd-audit.jsonl"`)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		n, err := exportAudit(r.Context(), a.st, w, window[0], window[1], func() { _ = rc.Flush() })
		if err != nil {
			// The status is sent; the truncated stream is all that can tell.
			reg.Audit(r, "audit.export", "audit", "", mdmd.OutcomeFailure, "", map[string]any{"entries": n, "error": err.Error()})
			return nil
		}
		reg.Audit(r, "audit.export", "audit", "", mdmd.OutcomeSuccess, "", map[string]any{"entries": n, "since": window[0], "until": window[1]})
		return nil
	})
}
