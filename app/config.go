package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdmd/mdmd/storage"
)

// Config is every setting of mdmd serve. Each has a flag and an environment
// variable; a flag wins over the variable, the variable over the default.
type Config struct {
	DataDir         string
	DatabaseURL     string
	Listen          string
	PublicURL       string
	TLSCert         string
	TLSKey          string
	SecretKeyFile   string
	LogLevel        string
	LogFormat       string
	MaxBodyBytes    int64
	DBMaxConns      int
	ShutdownTimeout time.Duration
	Workers         int
	JobPoll         time.Duration
	// AllowPrivateReceivers lets SSF push streams reach loopback and
	// private addresses (tests, a receiver on the same host).
	AllowPrivateReceivers bool
	CommandRetain         time.Duration
	Org                   string
	APNsURL               string
	APNsCAFile            string
	APNsConcurrency       int
	TrustedProxies        []*net.IPNet
	ChallengeTTL          time.Duration
	AMAPIEndpoint         string
	AMAPICreds            string
	AMAPIProject          string
	AMAPITopic            string
	AMAPIRate             int
	AMAPIWindow           time.Duration

	// publicURLDerived is set when PublicURL came from Listen, so that the
	// real port replaces a :0 once the server listens.
	publicURLDerived bool

	// SecretKey is read from MDMD_SECRET_KEY only: a flag would put it in
	// the process list.
	SecretKey string
}

// setting describes one configuration entry.
type setting struct {
	flag, env, def, usage string
	set                   func(c *Config, v string) error
}

func settings() []setting {
	str := func(f func(c *Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *f(c) = v; return nil }
	}
	dur := func(f func(c *Config) *time.Duration, min time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("not a duration (examples: 30s, 5m, 720h)")
			}
			if d < min {
				return fmt.Errorf("must be at least %s", min)
			}
			*f(c) = d
			return nil
		}
	}
	num := func(set func(c *Config, n int64), min, max int64) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < min || n > max {
				return fmt.Errorf("must be an integer from %d to %d", min, max)
			}
			set(c, n)
			return nil
		}
	}
	oneOf := func(f func(c *Config) *string, allowed ...string) func(*Config, string) error {
		return func(c *Config, v string) error {
			for _, a := range allowed {
				if v == a {
					*f(c) = v
					return nil
				}
			}
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
	}
	return []setting{
		{"data-dir", "MDMD_DATA_DIR", "./mdmd-data", "directory for the embedded database and the generated secret key",
			str(func(c *Config) *string { return &c.DataDir })},
		{"database-url", "MDMD_DATABASE_URL", "", "database: postgres://user@host/db or sqlite:PATH (default sqlite:<data-dir>/mdmd.db)",
			func(c *Config, v string) error {
				if _, err := storage.Dialect(v); err != nil {
					return errors.New("must start with postgres://, postgresql:// or sqlite:")
				}
				c.DatabaseURL = v
				return nil
			}},
		{"listen", "MDMD_LISTEN", "127.0.0.1:8080", "address to listen on (host:port)",
			func(c *Config, v string) error {
				_, port, err := net.SplitHostPort(v)
				if err != nil {
					return fmt.Errorf("must be host:port: %v", err)
				}
				if _, err := strconv.ParseUint(port, 10, 16); err != nil {
					return fmt.Errorf("port %q is not a number from 0 to 65535", port)
				}
				c.Listen = v
				return nil
			}},
		{"public-url", "MDMD_PUBLIC_URL", "", "URL devices and admins reach mdmd at (default derived from --listen)",
			func(c *Config, v string) error {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return errors.New("must be an absolute http:// or https:// URL")
				}
				c.PublicURL = strings.TrimSuffix(v, "/")
				return nil
			}},
		{"tls-cert", "MDMD_TLS_CERT", "", "PEM certificate chain to serve HTTPS with (needs --tls-key)",
			str(func(c *Config) *string { return &c.TLSCert })},
		{"tls-key", "MDMD_TLS_KEY", "", "PEM private key of --tls-cert",
			str(func(c *Config) *string { return &c.TLSKey })},
		{"secret-key-file", "MDMD_SECRET_KEY_FILE", "", "file holding the key that seals secrets in the database (default <data-dir>/secret.key, created on first start); MDMD_SECRET_KEY overrides it",
			str(func(c *Config) *string { return &c.SecretKeyFile })},
		{"log-level", "MDMD_LOG_LEVEL", "info", "debug, info, warn or error",
			oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
		{"log-format", "MDMD_LOG_FORMAT", "json", "json or text",
			oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "text")},
		{"max-body-bytes", "MDMD_MAX_BODY_BYTES", "4194304", "largest request body accepted",
			num(func(c *Config, n int64) { c.MaxBodyBytes = n }, 1024, 1<<30)},
		{"db-max-conns", "MDMD_DB_MAX_CONNS", "20", "database connection pool size (kept open, not churned)",
			num(func(c *Config, n int64) { c.DBMaxConns = int(n) }, 2, 1000)},
		{"shutdown-timeout", "MDMD_SHUTDOWN_TIMEOUT", "30s", "how long shutdown waits for in-flight requests",
			dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 0)},
		{"workers", "MDMD_WORKERS", "4", "background jobs run at once by this replica",
			num(func(c *Config, n int64) { c.Workers = int(n) }, 1, 256)},
		{"job-poll", "MDMD_JOB_POLL", "1s", "how often this replica looks for due background jobs",
			dur(func(c *Config) *time.Duration { return &c.JobPoll }, 10*time.Millisecond)},
		{"allow-private-receivers", "MDMD_ALLOW_PRIVATE_RECEIVERS", "false", "let SSF push streams reach loopback, private and link-local addresses, and plain http to localhost (tests, a receiver on the same host); never in production",
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return errors.New("must be true or false")
				}
				c.AllowPrivateReceivers = b
				return nil
			}},
		{"command-retention", "MDMD_COMMAND_RETENTION", "720h", "how long finished commands are kept",
			dur(func(c *Config) *time.Duration { return &c.CommandRetain }, time.Hour)},
		{"org", "MDMD_ORG", "mdmd", "organisation name in generated certificates and profiles",
			str(func(c *Config) *string { return &c.Org })},
		{"apns-url", "MDMD_APNS_URL", "https://api.push.apple.com", "Apple push endpoint (a fake APNs in tests and the demo)",
			func(c *Config, v string) error {
				u, err := url.Parse(v)
				if err != nil || u.Scheme != "https" || u.Host == "" {
					return errors.New("must be an https:// URL")
				}
				c.APNsURL = strings.TrimSuffix(v, "/")
				return nil
			}},
		{"apns-ca-file", "MDMD_APNS_CA_FILE", "", "PEM roots to trust for the push endpoint instead of the system's",
			str(func(c *Config) *string { return &c.APNsCAFile })},
		{"apns-concurrency", "MDMD_APNS_CONCURRENCY", "64", "pushes in flight to APNs at once, per replica",
			num(func(c *Config, n int64) { c.APNsConcurrency = int(n) }, 1, 1000)},
		{"trusted-proxies", "MDMD_TRUSTED_PROXIES", "", "comma-separated CIDRs of TLS-terminating proxies whose X-Forwarded-Proto and Client-Cert (RFC 9440) headers are believed",
			func(c *Config, v string) error {
				c.TrustedProxies = nil
				for _, part := range strings.Split(v, ",") {
					part = strings.TrimSpace(part)
					if part == "" {
						continue
					}
					_, n, err := net.ParseCIDR(part)
					if err != nil {
						return fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8)", part)
					}
					c.TrustedProxies = append(c.TrustedProxies, n)
				}
				return nil
			}},
		{"amapi-endpoint", "MDMD_AMAPI_ENDPOINT", "", "Android Management API endpoint (default Google's; the fake AMAPI in tests and the demo)",
			func(c *Config, v string) error {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					return errors.New("must be an http(s):// URL")
				}
				c.AMAPIEndpoint = v
				return nil
			}},
		{"amapi-credentials", "MDMD_AMAPI_CREDENTIALS", "", "Google service-account key file for the Android Management API",
			str(func(c *Config) *string { return &c.AMAPICreds })},
		{"amapi-project", "MDMD_AMAPI_PROJECT", "", "Google Cloud project ID (for signing up an enterprise)",
			str(func(c *Config) *string { return &c.AMAPIProject })},
		{"amapi-pubsub-topic", "MDMD_AMAPI_PUBSUB_TOPIC", "", "Pub/Sub topic AMAPI publishes device notifications to (projects/P/topics/T)",
			func(c *Config, v string) error {
				if !strings.HasPrefix(v, "projects/") || !strings.Contains(v, "/topics/") {
					return errors.New("must be projects/PROJECT/topics/TOPIC")
				}
				c.AMAPITopic = v
				return nil
			}},
		{"amapi-rate", "MDMD_AMAPI_RATE", "900", "AMAPI calls allowed per --amapi-rate-window, for all replicas together (AMAPI allows 1,000 per 100 s)",
			num(func(c *Config, n int64) { c.AMAPIRate = int(n) }, 1, 100000)},
		{"amapi-rate-window", "MDMD_AMAPI_RATE_WINDOW", "100s", "the window of --amapi-rate",
			dur(func(c *Config) *time.Duration { return &c.AMAPIWindow }, time.Second)},
		{"enroll-challenge-ttl", "MDMD_ENROLL_CHALLENGE_TTL", "1h", "how long a downloaded enrollment profile's one-time SCEP challenge stays valid",
			dur(func(c *Config) *time.Duration { return &c.ChallengeTTL }, time.Minute)},
	}
}

// ParseConfig reads flags from args and variables from getenv. Every
// invalid value is an error that names its flag and variable.
func ParseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := settings()
	for _, s := range all {
		if s.def != "" {
			if err := s.set(c, s.def); err != nil {
				panic("bad default for " + s.flag + ": " + err.Error())
			}
		}
	}
	for _, s := range all {
		if v := getenv(s.env); v != "" {
			if err := s.set(c, v); err != nil {
				return nil, fmt.Errorf("invalid %s=%q (--%s): %v", s.env, v, s.flag, err)
			}
		}
	}
	for _, s := range all {
		s := s
		fs.Func(s.flag, fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def), func(v string) error {
			if err := s.set(c, v); err != nil {
				return fmt.Errorf("%v (env %s)", err, s.env)
			}
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.SecretKey = getenv("MDMD_SECRET_KEY")
	return c, c.finish()
}

func (c *Config) finish() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("invalid --tls-cert/--tls-key (MDMD_TLS_CERT/MDMD_TLS_KEY): set both or neither")
	}
	for _, f := range []struct{ path, name string }{{c.TLSCert, "--tls-cert (MDMD_TLS_CERT)"}, {c.TLSKey, "--tls-key (MDMD_TLS_KEY)"},
		{c.APNsCAFile, "--apns-ca-file (MDMD_APNS_CA_FILE)"}, {c.AMAPICreds, "--amapi-credentials (MDMD_AMAPI_CREDENTIALS)"}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("invalid %s: %v", f.name, err)
			}
		}
	}
	if c.DataDir == "" {
		return errors.New("invalid --data-dir (MDMD_DATA_DIR): must not be empty")
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "mdmd.db")
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.DataDir, "secret.key")
	}
	if c.PublicURL == "" {
		scheme := "http"
		if c.TLSCert != "" {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(c.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.PublicURL = scheme + "://" + net.JoinHostPort(host, port)
		c.publicURLDerived = true
	}
	return nil
}

// Usage prints every setting as a Markdown table row (for the README).
func Usage(w io.Writer) {
	for _, s := range settings() {
		fmt.Fprintf(w, "| `--%s` | `%s` | `%s` | %s |\n", s.flag, s.env, s.def, s.usage)
	}
}

func (c *Config) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
