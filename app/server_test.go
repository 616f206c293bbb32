package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/storage/storagetest"
)

func TestFreshStartAndRestart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			dir := t.TempDir()
			ts := start(t, "--data-dir", dir, "--database-url", b.URL)
			out := ts.Stdout.String()
			for _, want := range []string{"Log in at:  " + ts.URL + "/", "username:   admin", "password:   ", "API token:  mdmd_"} {
				if !strings.Contains(out, want) {
					t.Fatalf("first start did not print %q:\n%s", want, out)
				}
			}
			if ts.Token == "" {
				t.Fatal("no bootstrap token printed")
			}
			password := strings.Fields(out[strings.Index(out, "password:"):])[1]

			ts.mustDo(200, "GET", "/healthz", "", nil)
			ts.mustDo(200, "GET", "/readyz", "", nil)
			var me struct {
				Role mdmd.Role `json:"role"`
			}
			ts.mustDo(200, "GET", "/api/v1/me", ts.Token, nil).json(t, &me)
			if me.Role != mdmd.RoleAdmin {
				t.Fatalf("bootstrap token role = %s", me.Role)
			}
			metrics := string(ts.mustDo(200, "GET", "/metrics", "", nil).Body)
			for _, m := range []string{`mdmd_http_requests_total{code="200",method="GET",route="/api/v1/me"}`, "go_goroutines", "go_sql_open_connections"} {
				if !strings.Contains(metrics, m) {
					t.Errorf("metrics lack %s", m)
				}
			}
			if !strings.Contains(ts.Stderr.String(), `"msg":"ready"`) {
				t.Fatalf("no structured JSON log line 'ready':\n%s", ts.Stderr)
			}

			// Secrets at rest: only hashes and sealed keys are stored.
			st := ts.srv.Store()
			ids := ts.srv.Identities()
			u, err := st.GetAdminUserByUsername(context.Background(), "admin")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(u.PasswordHash, password) || !auth.CheckPassword(u.PasswordHash, password) {
				t.Fatal("stored password hash does not verify, or holds the password")
			}
			keyDER, _ := x509.MarshalPKCS8PrivateKey(ids.CA.Key)
			dump := dumpDatabase(t, b, dir, st)
			for what, secret := range map[string][]byte{"CA private key": keyDER[len(keyDER)-64:], "password": []byte(password), "token": []byte(ts.Token), "PEM key": []byte("PRIVATE KEY")} {
				// PostgreSQL's text dump shows bytea as hex.
				if bytes.Contains(dump, secret) || bytes.Contains(bytes.ToLower(dump), []byte(hex.EncodeToString(secret))) {
					t.Errorf("database dump reveals the %s", what)
				}
			}
			caFP := ids.CA.Fingerprint()
			if err := ts.stop(); err != nil {
				t.Fatalf("Run returned %v", err)
			}

			// A restart keeps the CA, signer and credentials and prints no new ones.
			again := start(t, "--data-dir", dir, "--database-url", b.URL)
			if again.Token != "" || strings.Contains(again.Stdout.String(), "password:") {
				t.Fatalf("restart printed credentials again:\n%s", again.Stdout)
			}
			if got := again.srv.Identities().CA.Fingerprint(); got != caFP {
				t.Fatalf("CA changed across restart: %s -> %s", caFP, got)
			}
			again.mustDo(200, "GET", "/api/v1/me", ts.Token, nil)
			users, _ := again.srv.Store().ListAdminUsers(context.Background())
			if len(users) != 1 {
				t.Fatalf("restart created more administrators: %d", len(users))
			}
		})
	}
}

// dumpDatabase returns every byte the database holds: the SQLite files, or
// a text dump of every PostgreSQL table of the test's schema.
func dumpDatabase(t *testing.T, b storagetest.Backend, dir string, st interface{ DB() *sql.DB }) []byte {
	t.Helper()
	if b.Name == "sqlite" {
		var all []byte
		files, _ := filepath.Glob(filepath.Join(dir, "mdmd.db*"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, raw...)
		}
		return all
	}
	var all bytes.Buffer
	for _, table := range []string{"keypairs", "settings", "admin_users", "api_tokens", "audit_events"} {
		rows, err := st.DB().Query("SELECT row_to_json(t)::text FROM " + table + " t")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			all.WriteString(s)
		}
		rows.Close()
	}
	return all.Bytes()
}

func TestStartsOnEmbeddedDefaultWithNoFlags(t *testing.T) {
	// mdmd serve with no flags: ./mdmd-data in the working directory.
	dir := t.TempDir()
	t.Chdir(dir)
	cfg, err := ParseConfig("serve", nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.DatabaseURL != "sqlite:mdmd-data/mdmd.db" || cfg.PublicURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults = listen %s, db %s, url %s", cfg.Listen, cfg.DatabaseURL, cfg.PublicURL)
	}
	ts := start(t) // the defaults, but on a free port
	fi, err := os.Stat(filepath.Join(dir, "mdmd-data", "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key file mode = %o, want 600", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "mdmd-data", "mdmd.db")); err != nil {
		t.Fatal(err)
	}
	ts.mustDo(200, "GET", "/readyz", "", nil)
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"bad listen flag", []string{"--listen", "nonsense"}, nil, []string{"listen", "MDMD_LISTEN"}},
		{"bad listen env", nil, map[string]string{"MDMD_LISTEN": "host:notaport"}, []string{"MDMD_LISTEN", "--listen"}},
		{"bad database url", []string{"--database-url", "mysql://x"}, nil, []string{"database-url", "MDMD_DATABASE_URL"}},
		{"bad database env", nil, map[string]string{"MDMD_DATABASE_URL": "redis://x"}, []string{"MDMD_DATABASE_URL"}},
		{"bad log level", []string{"--log-level", "loud"}, nil, []string{"log-level", "MDMD_LOG_LEVEL"}},
		{"bad duration", nil, map[string]string{"MDMD_SHUTDOWN_TIMEOUT": "soon"}, []string{"MDMD_SHUTDOWN_TIMEOUT"}},
		{"bad number", []string{"--db-max-conns", "0"}, nil, []string{"db-max-conns", "MDMD_DB_MAX_CONNS"}},
		{"bad public url", []string{"--public-url", "ftp://x"}, nil, []string{"public-url", "MDMD_PUBLIC_URL"}},
		{"tls cert without key", []string{"--tls-cert", "/etc/hostname"}, nil, []string{"--tls-cert", "--tls-key"}},
		{"missing tls files", []string{"--tls-cert", "/nope.pem", "--tls-key", "/nope.key"}, nil, []string{"--tls-cert"}},
		{"unknown flag", []string{"--frobnicate"}, nil, []string{"frobnicate"}},
		{"stray argument", []string{"extra"}, nil, []string{"extra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("serve", tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	// A flag wins over its variable.
	cfg, err := ParseConfig("serve", []string{"--listen", "127.0.0.1:9"}, func(k string) string {
		return map[string]string{"MDMD_LISTEN": "127.0.0.1:7", "MDMD_WORKERS": "9"}[k]
	}, io.Discard)
	if err != nil || cfg.Listen != "127.0.0.1:9" || cfg.Workers != 9 {
		t.Fatalf("precedence: %+v, %v", cfg, err)
	}
}

func TestSecretKey(t *testing.T) {
	keyA := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	keyB := strings.Repeat("ab", 32)
	env := func(key string) func(string) string {
		return func(k string) string {
			if k == "MDMD_SECRET_KEY" {
				return key
			}
			return ""
		}
	}
	dir := t.TempDir()
	ts := launch(t, env(keyA), "--data-dir", dir)
	ts.waitReady()
	ts.stop()
	if _, err := os.Stat(filepath.Join(dir, "secret.key")); err == nil {
		t.Fatal("a key file was generated although MDMD_SECRET_KEY was set")
	}
	tests := []struct {
		name, key, want string
	}{
		{"malformed", "not a key!", "MDMD_SECRET_KEY"},
		{"short", "c2hvcnQ=", "MDMD_SECRET_KEY"},
		{"wrong key for this database", keyB, "not the key this database was created with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("serve", []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, env(tc.key), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = NewServer(cfg, io.Discard, io.Discard).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	// The right key still opens everything.
	ok := launch(t, env(keyA), "--data-dir", dir)
	ok.waitReady()
}

func TestDatabaseUnreachableAtStart(t *testing.T) {
	pg := storagetest.PostgresURL(t)
	if pg == "" {
		t.Skip("MDMD_TEST_DATABASE_URL not set")
	}
	// A port with nothing behind it yet; later a proxy to PostgreSQL appears there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	real := strings.SplitN(strings.TrimPrefix(pg, "postgres://"), "/", 2)
	userHost := real[0]
	target := userHost[strings.Index(userHost, "@")+1:]
	proxied := "postgres://" + userHost[:strings.Index(userHost, "@")+1] + fmt.Sprintf("127.0.0.1:%d/", port) + real[1]

	ts := launch(t, noEnv, "--data-dir", t.TempDir(), "--database-url", proxied)
	eventually(t, 10*time.Second, "a retry log line", func() bool {
		return strings.Contains(ts.Stderr.String(), "database unavailable, retrying")
	})
	ts.mustDo(200, "GET", "/healthz", "", nil)
	if r := ts.mustDo(503, "GET", "/readyz", "", nil); !strings.Contains(string(r.Body), "starting") {
		t.Fatalf("readyz body = %s", r.Body)
	}
	if code := ts.mustDo(503, "GET", "/api/v1/me", "mdmd_x", nil).errCode(t); code != mdmd.EUnavailable {
		t.Fatalf("API while starting: code %s", code)
	}
	select {
	case err := <-ts.done:
		t.Fatalf("server exited instead of retrying: %v", err)
	default:
	}

	// The database comes up: the server becomes ready on its own.
	proxy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	go forward(proxy, target)
	ts.waitReady()
	ts.mustDo(200, "GET", "/readyz", "", nil)
	ts.mustDo(200, "GET", "/api/v1/me", ts.Token, nil)

	// And when it goes away again, readiness says so.
	proxy.Close()
	closeForwarded()
	eventually(t, 10*time.Second, "readyz to fail", func() bool { return ts.do("GET", "/readyz", "", nil).Status == 503 })
}

var (
	fwdMu    sync.Mutex
	fwdConns []net.Conn
)

func forward(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		fwdMu.Lock()
		fwdConns = append(fwdConns, c, u)
		fwdMu.Unlock()
		go func() { io.Copy(u, c); u.Close() }()
		go func() { io.Copy(c, u); c.Close() }()
	}
}

func closeForwarded() {
	fwdMu.Lock()
	defer fwdMu.Unlock()
	for _, c := range fwdConns {
		c.Close()
	}
	fwdConns = nil
}

func TestDatabaseHangsAtStart(t *testing.T) {
	// A "database" that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	url := fmt.Sprintf("postgres://mdmd@%s/mdmd?sslmode=disable&connect_timeout=1", ln.Addr())
	ts := launch(t, noEnv, "--data-dir", t.TempDir(), "--database-url", url)
	eventually(t, 15*time.Second, "a retry log line", func() bool {
		return strings.Contains(ts.Stderr.String(), "database unavailable, retrying")
	})
	ts.mustDo(200, "GET", "/healthz", "", nil)
	ts.mustDo(503, "GET", "/readyz", "", nil)
	began := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(began); d > 8*time.Second {
		t.Fatalf("shutdown took %s with the database hanging", d)
	}
}

func TestTwoReplicasShareOneDatabase(t *testing.T) {
	pg := storagetest.PostgresURL(t)
	if pg == "" {
		t.Skip("MDMD_TEST_DATABASE_URL not set")
	}
	key := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	env := func(k string) string {
		if k == "MDMD_SECRET_KEY" {
			return key
		}
		return ""
	}
	const jobs = 40
	var mu sync.Mutex
	runs := map[string]int{}
	byReplica := map[int]int{}
	// Both replicas start at the same moment on an empty database: the
	// migrations, the CA and the first administrator must not race.
	var replicas [2]*testServer
	for i := range replicas {
		replicas[i] = launchWith(t, env, func(s *Server) {
			s.RegisterJob("test.count", func(ctx context.Context, j *mdmd.Job) error {
				mu.Lock()
				runs[string(j.Payload)]++
				byReplica[i]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				return nil
			})
		}, "--data-dir", t.TempDir(), "--database-url", pg, "--job-poll", "20ms", "--workers", "3")
	}
	for _, ts := range replicas {
		ts.waitReady()
	}
	a, b := replicas[0], replicas[1]
	if a.srv.Identities().CA.Fingerprint() != b.srv.Identities().CA.Fingerprint() {
		t.Fatal("replicas use different CAs")
	}
	users, _ := a.srv.Store().ListAdminUsers(context.Background())
	if len(users) != 1 {
		t.Fatalf("%d administrators bootstrapped", len(users))
	}

	// Exactly one replica printed the first administrator's credentials.
	var boot string
	for _, r := range replicas {
		if r.Token != "" {
			if boot != "" {
				t.Fatal("both replicas bootstrapped an administrator")
			}
			boot = r.Token
		}
	}
	if boot == "" {
		t.Fatal("no replica printed the bootstrap credentials")
	}
	// A token issued through one replica works on the other at once, and
	// so does its revocation: no replica caches credentials.
	var created struct{ Secret string }
	a.mustDo(201, "POST", "/api/v1/tokens", boot, map[string]any{"name": "x", "role": "viewer"}).json(t, &created)
	b.mustDo(200, "GET", "/api/v1/me", created.Secret, nil)
	a.mustDo(200, "DELETE", "/api/v1/tokens/"+tokenID(t, b, boot, "x"), boot, nil)
	b.mustDo(401, "GET", "/api/v1/me", created.Secret, nil)

	// Jobs enqueued through either replica are each done exactly once.
	for i := 0; i < jobs; i++ {
		st := replicas[i%2].srv.Store()
		if _, err := st.EnqueueJob(context.Background(), &mdmd.Job{Kind: "test.count", Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "every job to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs) == jobs
	})
	// Give a duplicate run the time to happen (many poll intervals).
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != jobs {
		t.Fatalf("%d distinct jobs ran, want %d", len(runs), jobs)
	}
	for p, n := range runs {
		if n != 1 {
			t.Errorf("job %s ran %d times", p, n)
		}
	}
	t.Logf("jobs per replica: %v", byReplica)
}

func tokenID(t *testing.T, ts *testServer, admin, name string) string {
	var list struct {
		Items []mdmd.APIToken `json:"items"`
	}
	ts.mustDo(200, "GET", "/api/v1/tokens", admin, nil).json(t, &list)
	for _, tok := range list.Items {
		if tok.Name == name {
			return tok.ID
		}
	}
	t.Fatalf("token %s not listed", name)
	return ""
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	ts := start(t, "--data-dir", t.TempDir())
	// A request whose body arrives slowly is in flight when shutdown begins.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/groups", pr)
	req.Header.Set("Authorization", "Bearer "+ts.Token)
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{status: resp.StatusCode}
	}()
	pw.Write([]byte(`{"name":`))
	time.Sleep(100 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("server stopped with a request in flight")
	default:
	}
	pw.Write([]byte(`"late-group"}`))
	pw.Close()
	r := <-got
	if r.err != nil || r.status != 201 {
		t.Fatalf("in-flight request: status %d, err %v", r.status, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	// New connections are refused once it has stopped.
	if _, err := http.Get(ts.URL + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	ts := launch(t, noEnv, "--data-dir", dir, "--tls-cert", certFile, "--tls-key", keyFile)
	ts.waitReady()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ts.srv.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("TLS readyz = %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if !strings.Contains(ts.Stdout.String(), "https://") {
		t.Fatalf("public URL is not https: %s", ts.Stdout)
	}
	// Plain HTTP to a TLS port gets no API response.
	if r, err := http.Get("http://" + ts.srv.Addr().String() + "/readyz"); err == nil && r.StatusCode == 200 {
		t.Fatal("plain HTTP served on the TLS port")
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestRunCommands(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"migrate", "--data-dir", dir}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied migration 1") {
		t.Fatalf("migrate printed %q", out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"migrate", "--data-dir", dir}, &out, &errOut); err != nil || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("second migrate: %v %q", err, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "mdmd ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if err := Run(context.Background(), []string{"frobnicate"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown command: %v", err)
	}
	// serve through Run, stopped by its context like SIGTERM would.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var sout syncBuffer
	go func() {
		done <- Run(ctx, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"}, &sout, io.Discard)
	}()
	eventually(t, 20*time.Second, "serve to print its URL", func() bool { return strings.Contains(sout.String(), "Log in at:") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
}
