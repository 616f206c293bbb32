// Package cli is mdmctl, the command-line client for the daily jobs of an
// mdmd administrator: listing and showing devices, enrollment links,
// lock and wipe (of one device or, in bulk, of a filtered set), approvals,
// API tokens and the audit export. It speaks
// only the admin JSON API, so it can do exactly what its token's role
// allows and nothing more.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const usage = `mdmctl: the mdmd command-line client

Usage: mdmctl [--server URL] [--token TOKEN] COMMAND [ARGS]

The server and token default to $MDMCTL_SERVER (http://127.0.0.1:8080) and
$MDMCTL_TOKEN.

Commands:
  devices list [--platform ios|android] [--state S] [--owner EMAIL] [--q TEXT] [--limit N]
  devices show ID                     a device with its compliance, rule by rule
  enroll-link [--owner EMAIL] [--one-time] [--personal]
                                      an iOS enrollment link
  query ID                            ask a device for its posture now
  lock ID [--message TEXT]
  wipe ID --mode selective|full --reason TEXT --confirm NAME
                                      a full wipe waits for a second admin
  approvals list [--state pending]
  approvals approve ID
  approvals reject ID --reason TEXT
  tokens list
  tokens create --name NAME --role ROLE [--audience AUD] [--days N]
  tokens revoke ID
  audit export [--since RFC3339] [--until RFC3339]
                                      JSON Lines on standard output
  bulk query|lock|wipe [FILTER] [--message TEXT] [--mode selective|full --reason TEXT --confirm N]
                                      act on every enrolled device FILTER selects:
                                      --q TEXT --platform P --ownership O --owner EMAIL
                                      --group ID --compliance STATE; a wipe needs the
                                      number of devices in --confirm and a second admin
  bulk list
  bulk show ID                        a bulk action with its progress
  bulk cancel ID --reason TEXT
`

// Run runs mdmctl with args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("mdmctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	server := fs.String("server", firstNonEmpty(getenv("MDMCTL_SERVER"), "http://127.0.0.1:8080"), "mdmd's URL")
	token := fs.String("token", getenv("MDMCTL_TOKEN"), "an API token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("no command")
	}
	if *token == "" {
		return errors.New("no token: pass --token or set MDMCTL_TOKEN")
	}
	c := &client{base: strings.TrimSuffix(*server, "/"), token: *token, out: stdout, http: &http.Client{Timeout: 60 * time.Second}}
	cmd, rest := rest[0], rest[1:]
	if sub := map[string]bool{"devices": true, "approvals": true, "tokens": true, "audit": true, "bulk": true}; sub[cmd] {
		if len(rest) == 0 {
			return fmt.Errorf("%s: which subcommand?", cmd)
		}
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	run, ok := commands[cmd]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
	return run(ctx, c, rest, stderr)
}

type client struct {
	base, token string
	out         io.Writer
	http        *http.Client
}

// APIError is an error answer from mdmd.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string }
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
			e.Error.Message = strings.TrimSpace(string(raw))
		}
		return nil, &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	return resp, nil
}

// printJSON writes v indented.
func (c *client) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type command func(ctx context.Context, c *client, args []string, stderr io.Writer) error

func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mdmctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags that may come before or after one positional ID.
func parse(fs *flag.FlagSet, args []string, wantID bool) (string, error) {
	var id string
	if wantID && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if wantID && id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	if wantID && id == "" {
		return "", fmt.Errorf("%s: an ID is required", fs.Name())
	}
	return id, nil
}

var commands = map[string]command{
	"devices list": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("devices list", stderr)
		platform, state, owner, q := fs.String("platform", "", ""), fs.String("state", "", ""), fs.String("owner", "", ""), fs.String("q", "", "")
		limit := fs.Int("limit", 100, "")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		v := url.Values{}
		for k, p := range map[string]*string{"platform": platform, "state": state, "owner": owner, "q": q} {
			if *p != "" {
				v.Set(k, *p)
			}
		}
		v.Set("limit", fmt.Sprint(*limit))
		var page struct {
			Items []struct {
				ID              string     `json:"id"`
				Platform        string     `json:"platform"`
				Name            string     `json:"name"`
				SerialNumber    string     `json:"serial_number"`
				OwnerUser       string     `json:"owner_user"`
				EnrollmentState string     `json:"enrollment_state"`
				OSVersion       string     `json:"os_version"`
				LastSeenAt      *time.Time `json:"last_seen_at"`
			}
		}
		if err := c.do(ctx, "GET", "/api/v1/devices?"+v.Encode(), nil, &page); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPLATFORM\tNAME\tSERIAL\tOWNER\tSTATE\tOS\tLAST SEEN")
		for _, d := range page.Items {
			seen := "never"
			if d.LastSeenAt != nil {
				seen = d.LastSeenAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Platform, d.Name, d.SerialNumber, d.OwnerUser,
				d.EnrollmentState, d.OSVersion, seen)
		}
		return tw.Flush()
	},
	"devices show": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		id, err := parse(flags("devices show", stderr), args, true)
		if err != nil {
			return err
		}
		var dev, comp any
		if err := c.do(ctx, "GET", "/api/v1/devices/"+url.PathEscape(id), nil, &dev); err != nil {
			return err
		}
		if err := c.do(ctx, "GET", "/api/v1/devices/"+url.PathEscape(id)+"/compliance", nil, &comp); err != nil {
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
				return err
			}
		}
		return c.printJSON(map[string]any{"device": dev, "compliance": comp})
	},
	"enroll-link": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("enroll-link", stderr)
		owner, oneTime, personal := fs.String("owner", "", ""), fs.Bool("one-time", false, ""), fs.Bool("personal", false, "")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		body := map[string]any{"one_time": *oneTime, "owner_user": *owner}
		if *personal {
			body["ownership"] = "personal"
		}
		var out struct{ URL string }
		if err := c.do(ctx, "POST", "/api/v1/enrollment-links", body, &out); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.out, out.URL)
		return err
	},
	"query": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		return c.action(ctx, args, stderr, "query", func(*flag.FlagSet) func() map[string]any {
			return func() map[string]any { return map[string]any{} }
		})
	},
	"lock": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		return c.action(ctx, args, stderr, "lock", func(fs *flag.FlagSet) func() map[string]any {
			msg := fs.String("message", "", "shown on the lock screen")
			return func() map[string]any { return map[string]any{"message": *msg} }
		})
	},
	"wipe": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		return c.action(ctx, args, stderr, "wipe", func(fs *flag.FlagSet) func() map[string]any {
			mode, reason, confirm := fs.String("mode", "", "selective or full"), fs.String("reason", "", ""), fs.String("confirm", "", "the device's name or serial number")
			return func() map[string]any { return map[string]any{"mode": *mode, "reason": *reason, "confirm": *confirm} }
		})
	},
	"approvals list": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("approvals list", stderr)
		state := fs.String("state", "pending", "")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		var out any
		if err := c.do(ctx, "GET", "/api/v1/approvals?state="+url.QueryEscape(*state), nil, &out); err != nil {
			return err
		}
		return c.printJSON(out)
	},
	"approvals approve": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		id, err := parse(flags("approvals approve", stderr), args, true)
		if err != nil {
			return err
		}
		var out any
		if err := c.do(ctx, "POST", "/api/v1/approvals/"+url.PathEscape(id)+"/approve", map[string]any{}, &out); err != nil {
			return err
		}
		return c.printJSON(out)
	},
	"approvals reject": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("approvals reject", stderr)
		reason := fs.String("reason", "", "")
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		var out any
		if err := c.do(ctx, "POST", "/api/v1/approvals/"+url.PathEscape(id)+"/reject", map[string]any{"reason": *reason}, &out); err != nil {
			return err
		}
		return c.printJSON(out)
	},
	"tokens list": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		if _, err := parse(flags("tokens list", stderr), args, false); err != nil {
			return err
		}
		var page struct {
			Items []struct {
				ID        string     `json:"id"`
				Name      string     `json:"name"`
				Role      string     `json:"role"`
				Audience  string     `json:"audience"`
				Prefix    string     `json:"prefix"`
				ExpiresAt time.Time  `json:"expires_at"`
				RevokedAt *time.Time `json:"revoked_at"`
			}
		}
		if err := c.do(ctx, "GET", "/api/v1/tokens", nil, &page); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tAUDIENCE\tPREFIX\tEXPIRES\tREVOKED")
		for _, t := range page.Items {
			revoked := ""
			if t.RevokedAt != nil {
				revoked = t.RevokedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.Audience, t.Prefix, t.ExpiresAt.Local().Format(time.DateOnly), revoked)
		}
		return tw.Flush()
	},
	"tokens create": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("tokens create", stderr)
		name, role, aud := fs.String("name", "", ""), fs.String("role", "", ""), fs.String("audience", "", "")
		days := fs.Int("days", 90, "")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		var out struct{ Secret string }
		body := map[string]any{"name": *name, "role": *role, "expires_in_days": *days}
		if *aud != "" {
			body["audience"] = *aud
		}
		if err := c.do(ctx, "POST", "/api/v1/tokens", body, &out); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.out, out.Secret)
		return err
	},
	"tokens revoke": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		id, err := parse(flags("tokens revoke", stderr), args, true)
		if err != nil {
			return err
		}
		return c.do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
	},
	"audit export": func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("audit export", stderr)
		since, until := fs.String("since", "", ""), fs.String("until", "", "")
		if _, err := parse(fs, args, false); err != nil {
			return err
		}
		v := url.Values{}
		if *since != "" {
			v.Set("since", *since)
		}
		if *until != "" {
			v.Set("until", *until)
		}
		resp, err := c.send(ctx, "GET", "/api/v1/audit/export?"+v.Encode(), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(c.out, resp.Body)
		return err
	},
}

func init() {
	for _, kind := range []string{"query", "lock", "wipe"} {
		commands["bulk "+kind] = func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
			return c.bulk(ctx, args, stderr, kind)
		}
	}
	commands["bulk list"] = func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		if _, err := parse(flags("bulk list", stderr), args, false); err != nil {
			return err
		}
		var page struct {
			Items []struct {
				ID, Action, State string
				Total             int
				CreatedAt         time.Time `json:"created_at"`
			}
		}
		if err := c.do(ctx, "GET", "/api/v1/bulk-actions", nil, &page); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACTION\tDEVICES\tSTATE\tCREATED")
		for _, b := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.ID, b.Action, b.Total, b.State, b.CreatedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	}
	commands["bulk show"] = func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		id, err := parse(flags("bulk show", stderr), args, true)
		if err != nil {
			return err
		}
		var out any
		if err := c.do(ctx, "GET", "/api/v1/bulk-actions/"+url.PathEscape(id), nil, &out); err != nil {
			return err
		}
		return c.printJSON(out)
	}
	commands["bulk cancel"] = func(ctx context.Context, c *client, args []string, stderr io.Writer) error {
		fs := flags("bulk cancel", stderr)
		reason := fs.String("reason", "", "")
		id, err := parse(fs, args, true)
		if err != nil {
			return err
		}
		var out any
		if err := c.do(ctx, "POST", "/api/v1/bulk-actions/"+url.PathEscape(id)+"/cancel", map[string]any{"reason": *reason}, &out); err != nil {
			return err
		}
		return c.printJSON(out)
	}
}

// bulk starts a bulk action on the devices a filter selects and prints it
// (a wipe waits for a second admin's approval).
func (c *client) bulk(ctx context.Context, args []string, stderr io.Writer, kind string) error {
	fs := flags("bulk "+kind, stderr)
	filter := map[string]*string{}
	for _, k := range []string{"q", "platform", "ownership", "owner", "compliance"} {
		filter[k] = fs.String(k, "", "")
	}
	group := fs.String("group", "", "a group's ID")
	msg, mode, reason, confirm := fs.String("message", "", ""), fs.String("mode", "", ""), fs.String("reason", "", ""), fs.String("confirm", "", "")
	if _, err := parse(fs, args, false); err != nil {
		return err
	}
	f := map[string]string{}
	for k, v := range filter {
		if *v != "" {
			f[k] = *v
		}
	}
	if *group != "" {
		f["group_id"] = *group
	}
	body := map[string]any{"filter": f}
	for k, v := range map[string]string{"message": *msg, "mode": *mode, "reason": *reason, "confirm": *confirm} {
		if v != "" {
			body[k] = v
		}
	}
	var out any
	if err := c.do(ctx, "POST", "/api/v1/bulk-actions/"+kind, body, &out); err != nil {
		return err
	}
	return c.printJSON(out)
}

// action posts a device action and prints what it queued (or the
// approval it waits for).
func (c *client) action(ctx context.Context, args []string, stderr io.Writer, name string, define func(*flag.FlagSet) func() map[string]any) error {
	fs := flags(name, stderr)
	body := define(fs)
	id, err := parse(fs, args, true)
	if err != nil {
		return err
	}
	var out any
	if err := c.do(ctx, "POST", "/api/v1/devices/"+url.PathEscape(id)+"/actions/"+name, body(), &out); err != nil {
		return err
	}
	return c.printJSON(out)
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
