package mdmd_test

// Static checks on the deployment files (Dockerfile, docker-compose.yml) and,
// when a compose implementation is installed, a `docker compose config`
// validation run. None of these tests need a Docker engine.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	composeFile    = "docker-compose.yml"
	dockerfileName = "Dockerfile"
	// dummySecretKey is base64 of 32 zero bytes; only used to satisfy the
	// ${MDMD_SECRET_KEY:?...} interpolation during `compose config`.
	dummySecretKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

// ---------------------------------------------------------------------------
// docker-compose.yml

type composeFileT struct {
	Version  *string                   `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string    `yaml:"image"`
	Build       yaml.Node `yaml:"build"`
	DependsOn   yaml.Node `yaml:"depends_on"`
	Environment yaml.Node `yaml:"environment"`
	Ports       []any     `yaml:"ports"`
	Volumes     []any     `yaml:"volumes"`
	Restart     string    `yaml:"restart"`
	Healthcheck *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) composeFileT {
	t.Helper()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatalf("read %s: %v", composeFile, err)
	}
	var c composeFileT
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parse %s: %v", composeFile, err)
	}
	return c
}

// buildContext returns the build context of a service: `build: X` or
// `build: {context: X}`.
func buildContext(n yaml.Node) (string, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, true
	case yaml.MappingNode:
		var m struct {
			Context string `yaml:"context"`
		}
		if err := n.Decode(&m); err != nil {
			return "", false
		}
		if m.Context == "" {
			return ".", true // compose default
		}
		return m.Context, true
	}
	return "", false
}

// dependsOn returns service -> condition ("" for the short list form, which
// means service_started).
func dependsOn(n yaml.Node) (map[string]string, error) {
	out := map[string]string{}
	switch n.Kind {
	case 0:
		return out, nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, s := range l {
			out[s] = ""
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v.Condition
		}
	default:
		return nil, fmt.Errorf("unexpected depends_on kind %v", n.Kind)
	}
	return out, nil
}

// environment normalises the map and list (KEY=VALUE) forms.
func environment(n yaml.Node) (map[string]string, error) {
	out := map[string]string{}
	switch n.Kind {
	case 0:
		return out, nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v
		}
	default:
		return nil, fmt.Errorf("unexpected environment kind %v", n.Kind)
	}
	return out, nil
}

// publishedHostIPs returns, for each port mapping, the host IP it binds to
// ("" when it binds to all interfaces).
func publishedHostIPs(ports []any) ([]string, error) {
	var ips []string
	for _, p := range ports {
		switch v := p.(type) {
		case string:
			// [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]; IPv6 as [::1]:...
			s, _, _ := strings.Cut(v, "/")
			if strings.HasPrefix(s, "[") {
				end := strings.Index(s, "]")
				if end < 0 {
					return nil, fmt.Errorf("bad port %q", v)
				}
				ips = append(ips, s[1:end])
				continue
			}
			parts := strings.Split(s, ":")
			if len(parts) == 3 {
				ips = append(ips, parts[0])
			} else {
				ips = append(ips, "")
			}
		case int:
			ips = append(ips, "")
		case map[string]any:
			ip, _ := v["host_ip"].(string)
			ips = append(ips, ip)
		default:
			return nil, fmt.Errorf("unexpected port entry %#v", p)
		}
	}
	return ips, nil
}

var requiredVarRE = regexp.MustCompile(`^\$\{MDMD_SECRET_KEY:\?[^}]+\}$`)

func TestDockerCompose(t *testing.T) {
	c := loadCompose(t)

	if c.Version != nil {
		t.Errorf("%s has an obsolete top-level version: key (%q)", composeFile, *c.Version)
	}

	tests := []struct {
		name  string
		check func(t *testing.T, c composeFileT)
	}{
		{"services exist", func(t *testing.T, c composeFileT) {
			for _, name := range []string{"postgres", "mdmd"} {
				if _, ok := c.Services[name]; !ok {
					t.Errorf("service %q missing; have %v", name, keys(c.Services))
				}
			}
		}},
		{"postgres has pg_isready healthcheck", func(t *testing.T, c composeFileT) {
			hc := c.Services["postgres"].Healthcheck
			if hc == nil || !strings.Contains(fmt.Sprint(hc.Test), "pg_isready") {
				t.Errorf("postgres healthcheck should use pg_isready, got %#v", hc)
			}
		}},
		{"mdmd builds from repo root", func(t *testing.T, c composeFileT) {
			ctx, ok := buildContext(c.Services["mdmd"].Build)
			if !ok || (ctx != "." && ctx != "./") {
				t.Errorf("mdmd build context = %q (ok=%v), want \".\"", ctx, ok)
			}
		}},
		{"mdmd waits for healthy postgres", func(t *testing.T, c composeFileT) {
			deps, err := dependsOn(c.Services["mdmd"].DependsOn)
			if err != nil {
				t.Fatal(err)
			}
			cond, ok := deps["postgres"]
			if !ok {
				t.Fatalf("mdmd does not depend on postgres; depends_on = %v", deps)
			}
			if cond != "service_healthy" {
				t.Errorf("mdmd depends_on postgres condition = %q, want service_healthy", cond)
			}
		}},
		{"MDMD_DATABASE_URL points at postgres service", func(t *testing.T, c composeFileT) {
			env, err := environment(c.Services["mdmd"].Environment)
			if err != nil {
				t.Fatal(err)
			}
			raw, ok := env["MDMD_DATABASE_URL"]
			if !ok {
				t.Fatal("mdmd has no MDMD_DATABASE_URL")
			}
			if !strings.HasPrefix(raw, "postgres://") {
				t.Errorf("MDMD_DATABASE_URL = %q, want postgres:// scheme", raw)
			}
			// Substitute interpolations so the URL parses.
			u, err := url.Parse(regexp.MustCompile(`\$\{[^}]*\}`).ReplaceAllString(raw, "x"))
			if err != nil {
				t.Fatalf("MDMD_DATABASE_URL %q does not parse: %v", raw, err)
			}
			if h := u.Hostname(); h != "postgres" {
				t.Errorf("MDMD_DATABASE_URL host = %q, want postgres", h)
			}
		}},
		{"MDMD_SECRET_KEY is required", func(t *testing.T, c composeFileT) {
			env, err := environment(c.Services["mdmd"].Environment)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := env["MDMD_SECRET_KEY"]
			if !ok {
				t.Fatal("mdmd has no MDMD_SECRET_KEY")
			}
			if !requiredVarRE.MatchString(v) {
				t.Errorf("MDMD_SECRET_KEY = %q, want the required form ${MDMD_SECRET_KEY:?message}", v)
			}
		}},
		{"ports bind to loopback only", func(t *testing.T, c composeFileT) {
			for name, svc := range c.Services {
				ips, err := publishedHostIPs(svc.Ports)
				if err != nil {
					t.Fatalf("service %s: %v", name, err)
				}
				for i, ip := range ips {
					if ip != "127.0.0.1" {
						t.Errorf("service %s port %v binds to %q, want 127.0.0.1", name, svc.Ports[i], ip)
					}
				}
			}
			if len(c.Services["mdmd"].Ports) == 0 {
				t.Error("mdmd publishes no ports")
			}
		}},
		{"mdmd has a /data volume", func(t *testing.T, c composeFileT) {
			found := false
			for _, v := range c.Services["mdmd"].Volumes {
				switch v := v.(type) {
				case string:
					found = found || strings.HasSuffix(v, ":/data")
				case map[string]any:
					found = found || v["target"] == "/data"
				}
			}
			if !found {
				t.Errorf("mdmd volumes %v do not mount /data", c.Services["mdmd"].Volumes)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, c) })
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// Dockerfile

type dockerInstr struct {
	Cmd  string // upper-cased instruction, e.g. RUN
	Args string
}

type dockerStage struct {
	From  string // FROM argument line (image [AS name])
	Image string
	Instr []dockerInstr
}

// parseDockerfile is a minimal parser: it joins backslash continuations,
// drops comments and splits the file into stages at each FROM.
func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	f, err := os.Open(dockerfileName)
	if err != nil {
		t.Fatalf("open %s: %v", dockerfileName, err)
	}
	defer f.Close()

	var (
		stages  []dockerStage
		logical strings.Builder
	)
	flush := func() {
		line := strings.TrimSpace(logical.String())
		logical.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		if cmd == "FROM" {
			fields := strings.Fields(args)
			img := ""
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					img = f
					break
				}
			}
			stages = append(stages, dockerStage{From: args, Image: img})
			return
		}
		if len(stages) == 0 {
			return // ARG before first FROM, etc.
		}
		s := &stages[len(stages)-1]
		s.Instr = append(s.Instr, dockerInstr{Cmd: cmd, Args: args})
	}

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comment (or parser directive) – also inside continuations
		}
		if strings.HasSuffix(trimmed, `\`) {
			logical.WriteString(strings.TrimSuffix(trimmed, `\`))
			logical.WriteString(" ")
			continue
		}
		logical.WriteString(trimmed)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	if len(stages) == 0 {
		t.Fatalf("%s has no FROM", dockerfileName)
	}
	return stages
}

var goBuildRE = regexp.MustCompile(`\bgo\s+build\b`)

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]

	// The stage(s) that run `go build`.
	var buildRuns []string
	var buildEnv []string
	for _, s := range stages {
		for _, in := range s.Instr {
			if in.Cmd == "RUN" && goBuildRE.MatchString(in.Args) {
				buildRuns = append(buildRuns, in.Args)
				for _, e := range s.Instr {
					if e.Cmd == "ENV" {
						buildEnv = append(buildEnv, e.Args)
					}
				}
			}
		}
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"multi-stage", func(t *testing.T) {
			if len(stages) < 2 {
				t.Errorf("want a multi-stage build, got %d stage(s)", len(stages))
			}
		}},
		{"has go build", func(t *testing.T) {
			if len(buildRuns) == 0 {
				t.Fatal("no RUN ... go build found")
			}
		}},
		{"CGO_ENABLED=0", func(t *testing.T) {
			cgoOff := regexp.MustCompile(`\bCGO_ENABLED=0\b`)
			for _, r := range append(append([]string{}, buildRuns...), buildEnv...) {
				if cgoOff.MatchString(r) {
					return
				}
			}
			t.Errorf("go build does not use CGO_ENABLED=0: %q", buildRuns)
		}},
		{"builds ./cmd/mdmd", func(t *testing.T) {
			pkg := regexp.MustCompile(`(^|\s)\./cmd/mdmd/?(\s|$|&|;)`)
			for _, r := range buildRuns {
				if pkg.MatchString(r) {
					return
				}
			}
			t.Errorf("go build does not build ./cmd/mdmd: %q", buildRuns)
		}},
		{"final stage is not root", func(t *testing.T) {
			user := ""
			if strings.HasSuffix(final.Image, ":nonroot") {
				user = "nonroot"
			}
			for _, in := range final.Instr {
				if in.Cmd == "USER" {
					user = strings.Fields(in.Args)[0]
				}
			}
			name, _, _ := strings.Cut(user, ":")
			switch name {
			case "", "root", "0":
				t.Errorf("final stage (FROM %s) runs as %q; want USER nonroot or a :nonroot image", final.From, user)
			}
		}},
		{"final stage entrypoint", func(t *testing.T) {
			var ep string
			for _, in := range final.Instr {
				if in.Cmd == "ENTRYPOINT" {
					ep = in.Args
				}
			}
			if ep != `["/mdmd"]` {
				t.Errorf("ENTRYPOINT = %q, want [\"/mdmd\"]", ep)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

// ---------------------------------------------------------------------------
// compose config (needs a compose implementation, not a Docker engine)

// composeCommand returns the argv prefix for compose: standalone
// docker-compose (v1) if installed, otherwise the `docker compose` plugin.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("skipping: neither docker-compose nor docker is installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("skipping: the docker compose plugin is missing (`docker compose version` failed: %v: %s)",
			err, strings.TrimSpace(string(out)))
	}
	return []string{docker, "compose"}
}

// envWithout returns os.Environ() minus the named variables.
func envWithout(names ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			if k == n {
				drop = true
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

func TestComposeConfig(t *testing.T) {
	argv := composeCommand(t)
	run := func(t *testing.T, env []string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append(append([]string{}, argv[1:]...), "-f", composeFile, "config")
		cmd := exec.CommandContext(ctx, argv[0], args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	base := envWithout("MDMD_SECRET_KEY", "MDMD_POSTGRES_PASSWORD", "MDMD_PUBLIC_URL", "COMPOSE_FILE")

	tests := []struct {
		name    string
		env     []string
		wantErr bool
		wantOut []string
	}{
		{
			name:    "valid with secret key",
			env:     append(append([]string{}, base...), "MDMD_SECRET_KEY="+dummySecretKey),
			wantOut: []string{dummySecretKey, "postgres://mdmd:mdmd-change-me@postgres:5432/mdmd"},
		},
		{
			name:    "fails without secret key",
			env:     base,
			wantErr: true,
			wantOut: []string{"MDMD_SECRET_KEY"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.env)
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("running %v: %v", argv, err)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("compose config error = %v, wantErr %v\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("compose config output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
