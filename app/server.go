package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/apple/apns"
	"github.com/mdmd/mdmd/apple/mdm"
	"github.com/mdmd/mdmd/approvals"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/enroll"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/jwtsign"
	"github.com/mdmd/mdmd/pki"
	"github.com/mdmd/mdmd/profiles"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/users"
	"github.com/mdmd/mdmd/web"
	"github.com/mdmd/mdmd/web/console"
	"github.com/mdmd/mdmd/webhooks"
)

// Server is one mdmd replica: the HTTP server, the database, and the
// background job runner. Several replicas may share one PostgreSQL
// database; nothing that correctness depends on lives only in a Server.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	stdout  io.Writer
	reg     *prometheus.Registry
	root    *web.Root
	replica string

	handlers map[string]jobs.Handler

	mu         sync.Mutex
	addr       net.Addr
	store      *storage.Store
	ids        *pki.Identities
	ready      chan struct{}
	listenCh   chan struct{}
	commands   *commands.Service
	pusher     *apns.Service
	compliance *compliance.Service
	apiRoutes  []web.Route
	conRoutes  []console.Route
}

// APIRoutes lists every admin route with its permission (valid after Ready).
func (s *Server) APIRoutes() []web.Route { s.mu.Lock(); defer s.mu.Unlock(); return s.apiRoutes }

// ConsoleRoutes lists the web console's routes with their permissions
// (valid after Ready).
func (s *Server) ConsoleRoutes() []console.Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conRoutes
}

// Commands is the command service (valid after Ready).
func (s *Server) Commands() *commands.Service { s.mu.Lock(); defer s.mu.Unlock(); return s.commands }

// Compliance is the compliance service (valid after Ready).
func (s *Server) Compliance() *compliance.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compliance
}

// Pusher is the APNs service (valid after Ready).
func (s *Server) Pusher() *apns.Service { s.mu.Lock(); defer s.mu.Unlock(); return s.pusher }

// NewServer prepares a server; Run starts it.
func NewServer(cfg *Config, stdout, stderr io.Writer) *Server {
	log := cfg.logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	host, _ := os.Hostname()
	return &Server{
		cfg: cfg, log: log, stdout: stdout, reg: reg,
		root:     web.NewRoot(web.RootOptions{Logger: log.With("component", "http"), Registry: reg, MaxBodyBytes: cfg.MaxBodyBytes, TLS: cfg.TLSCert != ""}),
		replica:  fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randHex(3)),
		handlers: map[string]jobs.Handler{},
		ready:    make(chan struct{}),
		listenCh: make(chan struct{}),
	}
}

// RegisterJob adds a background job handler. Call it before Run.
func (s *Server) RegisterJob(kind string, h jobs.Handler) { s.handlers[kind] = h }

// Listening is closed once the server accepts connections.
func (s *Server) Listening() <-chan struct{} { return s.listenCh }

// Ready is closed once the database is migrated and the API is served.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on (valid after Listening).
func (s *Server) Addr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.addr }

// Store is the server's database (valid after Ready).
func (s *Server) Store() *storage.Store { s.mu.Lock(); defer s.mu.Unlock(); return s.store }

// Identities are the server's CA and profile signer (valid after Ready).
func (s *Server) Identities() *pki.Identities { s.mu.Lock(); defer s.mu.Unlock(); return s.ids }

// Run serves until ctx ends, then shuts down gracefully: in-flight requests
// finish (up to the shutdown timeout), running jobs finish, and the
// database is closed. Health and readiness are served from the start; the
// API once the database is reachable and migrated.
func (s *Server) Run(ctx context.Context) error {
	box, err := s.secretBox()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("invalid --listen (MDMD_LISTEN) %q: %w", s.cfg.Listen, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	if s.cfg.publicURLDerived {
		// Listening on port 0 picks a port; the printed URL names the real one.
		u, _ := url.Parse(s.cfg.PublicURL)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		u.Host = net.JoinHostPort(u.Hostname(), port)
		s.cfg.PublicURL = u.String()
	}
	s.mu.Unlock()

	srv := &http.Server{
		Handler:           s.root,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("invalid --tls-cert/--tls-key: %w", err)
		}
		// Devices may authenticate with their identity certificate in TLS
		// (the MDM endpoints verify it); nobody is required to present one.
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequestClientCert}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else if host, _, _ := net.SplitHostPort(s.cfg.Listen); !isLoopback(host) {
		s.log.Warn("serving plain HTTP on a non-loopback address: put a TLS-terminating proxy in front, or set --tls-cert and --tls-key",
			"listen", s.cfg.Listen)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	close(s.listenCh)
	s.log.Info("listening", "addr", ln.Addr().String(), "public_url", s.cfg.PublicURL, "replica", s.replica)

	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	var bg sync.WaitGroup
	startErr := make(chan error, 1)
	bg.Add(1)
	go func() {
		defer bg.Done()
		startErr <- s.start(appCtx, box, &bg)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-startErr:
		if err != nil {
			runErr = err
		} else {
			select {
			case <-ctx.Done():
			case err := <-serveErr:
				runErr = fmt.Errorf("http server: %w", err)
			}
		}
	}

	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("shutdown did not finish in time; connections closed", "err", err)
		srv.Close()
	}
	stopApp()
	bg.Wait()
	if st := s.Store(); st != nil {
		st.Close()
	}
	s.log.Info("stopped")
	return runErr
}

// connect opens and migrates the database.
func (s *Server) connect(ctx context.Context, log *slog.Logger) (*storage.Store, error) {
	st, err := storage.Open(ctx, s.cfg.DatabaseURL, storage.Options{MaxOpenConns: s.cfg.DBMaxConns, Logger: log})
	if err != nil {
		return nil, err
	}
	if _, err := st.Migrate(ctx, log); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

// start connects to the database (retrying while it is unreachable),
// migrates, bootstraps and then serves the API and runs jobs.
func (s *Server) start(ctx context.Context, box *secret.Box, bg *sync.WaitGroup) error {
	log := s.log.With("component", "storage")
	var st *storage.Store
	for attempt, delay := 1, 250*time.Millisecond; ; attempt++ {
		var err error
		st, err = s.connect(ctx, log)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Error("database unavailable, retrying", "attempt", attempt, "retry_in", delay.String(),
			"database", storage.Redact(s.cfg.DatabaseURL), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 15*time.Second)
	}
	s.mu.Lock()
	s.store = st
	s.mu.Unlock()

	if err := checkSecretKey(ctx, st, box); err != nil {
		return err
	}
	ids, created, err := pki.Bootstrap(ctx, st, box, s.cfg.Org)
	if err != nil {
		return fmt.Errorf("bootstrap identities: %w", err)
	}
	for _, name := range created {
		s.log.Info("generated identity", "name", name)
	}
	s.mu.Lock()
	s.ids = ids
	s.mu.Unlock()
	cred, err := bootstrapAdmin(ctx, st)
	if err != nil {
		return fmt.Errorf("bootstrap administrator: %w", err)
	}
	s.reg.MustRegister(collectors.NewDBStatsCollector(st.DB(), string(st.DialectName())))

	runner := jobs.New(st, jobs.Options{Replica: s.replica, Concurrency: s.cfg.Workers, Poll: s.cfg.JobPoll,
		Logger: s.log.With("component", "jobs"), Registerer: s.reg})
	runner.Register("commands.prune", func(ctx context.Context, _ *mdmd.Job) error {
		n, err := st.PruneCommands(ctx, time.Now().Add(-s.cfg.CommandRetain))
		if n > 0 {
			s.log.Info("pruned finished commands", "count", n)
		}
		return err
	})
	runner.Every("commands.prune", time.Hour)
	runner.Register("jobs.prune", func(ctx context.Context, _ *mdmd.Job) error {
		_, err := st.PruneJobs(ctx, time.Now().Add(-7*24*time.Hour))
		return err
	})
	runner.Every("jobs.prune", time.Hour)
	for kind, h := range s.handlers {
		runner.Register(kind, h)
	}

	// Apple: push, enrollment, the MDM endpoints and device commands.
	var apnsRoots *x509.CertPool
	if s.cfg.APNsCAFile != "" {
		pemData, err := os.ReadFile(s.cfg.APNsCAFile)
		if err != nil {
			return fmt.Errorf("invalid --apns-ca-file (MDMD_APNS_CA_FILE): %w", err)
		}
		apnsRoots = x509.NewCertPool()
		if !apnsRoots.AppendCertsFromPEM(pemData) {
			return errors.New("invalid --apns-ca-file (MDMD_APNS_CA_FILE): no PEM certificates in it")
		}
	}
	pusher := apns.New(st, box, apns.Config{URL: s.cfg.APNsURL, RootCAs: apnsRoots, Concurrency: s.cfg.APNsConcurrency,
		Logger: s.log.With("component", "apns")})
	enrollment := enroll.New(st, ids, pusher, enroll.Config{PublicURL: s.cfg.PublicURL, Organization: s.cfg.Org,
		ChallengeTTL: s.cfg.ChallengeTTL}, s.log.With("component", "enroll"))
	cmds := commands.NewService(st, runner, box)
	// Two-person approval: a full wipe or a group wipe is carried out by
	// the command service only once a second admin approves it.
	exec := &approvalExecutor{Service: cmds}
	approvalSvc := approvals.New(st, exec, s.log.With("component", "approvals"), nil)
	cmds.Approvals = approvalSvc
	// Bulk actions on a filtered device list; bulk wipes wait for approval.
	bulkSvc := bulk.New(st, cmds, approvalSvc, runner, s.log.With("component", "bulk"))
	exec.bulk = bulkSvc
	runner.Register(bulk.RunJob, bulkSvc.RunJob)
	runner.Every(bulk.RunJob, time.Minute)
	runner.Register(bulk.PruneJob, bulkSvc.Prune)
	runner.Every(bulk.PruneJob, 24*time.Hour)
	profileSvc := profiles.NewService(st, cmds, runner, ids, box, s.cfg.Org, s.log.With("component", "profiles"))
	runner.Register(profiles.ReconcileJob, profileSvc.RunJob)
	runner.Register(enroll.RenewJob, func(ctx context.Context, _ *mdmd.Job) error {
		_, err := enrollment.RenewExpiring(ctx, st, cmds)
		return err
	})
	runner.Every(enroll.RenewJob, 6*time.Hour)
	mdmSvc := mdm.New(st, ids.CA.Cert, box, mdm.Options{TrustedProxies: s.cfg.TrustedProxies, Observer: profileSvc,
		Logger: s.log.With("component", "mdm")})
	runner.Register(commands.PushJob, func(ctx context.Context, j *mdmd.Job) error {
		var p commands.PushPayload
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			return fmt.Errorf("push job payload: %w", err)
		}
		_, err := pusher.Push(ctx, p.DeviceIDs)
		return err
	})

	androidSvc := android.New(st, box, android.Config{Endpoint: s.cfg.AMAPIEndpoint, CredentialsFile: s.cfg.AMAPICreds,
		ProjectID: s.cfg.AMAPIProject, PubsubTopic: s.cfg.AMAPITopic, PublicURL: s.cfg.PublicURL, Rate: s.cfg.AMAPIRate,
		Window: s.cfg.AMAPIWindow, Logger: s.log.With("component", "android")})
	androidCmds := android.NewCommands(st, androidSvc, runner, box)
	androidSvc.SetCommands(androidCmds)
	cmds.Android = androidCmds
	runner.Register(android.CommandJob, androidCmds.RunJob)
	runner.Register(android.ReconcileJob, androidCmds.ReconcileOperations)
	runner.Every(android.ReconcileJob, 5*time.Minute)
	runner.Register(android.DevicesJob, androidSvc.ReconcileDevices)
	runner.Every(android.DevicesJob, 6*time.Hour)
	runner.Register("android.prune_messages", func(ctx context.Context, _ *mdmd.Job) error {
		_, err := st.PrunePubsubMessages(ctx, time.Now().Add(-8*24*time.Hour))
		return err
	})
	runner.Every("android.prune_messages", 24*time.Hour)
	runner.Register("rate.prune", func(ctx context.Context, _ *mdmd.Job) error {
		return st.PruneRateWindows(ctx, time.Now().Add(-time.Hour))
	})
	runner.Every("rate.prune", time.Hour)

	complianceSvc := compliance.NewService(st, s.log.With("component", "compliance"), nil)
	complianceSvc.Jobs = runner
	runner.Register(compliance.SweepJob, func(ctx context.Context, _ *mdmd.Job) error {
		_, err := complianceSvc.Sweep(ctx)
		return err
	})
	runner.Every(compliance.SweepJob, 15*time.Minute)
	actions := &compliance.Actions{Store: st, Do: cmds, Log: s.log.With("component", "compliance-actions")}
	runner.Register(compliance.ActionsJob, func(ctx context.Context, _ *mdmd.Job) error {
		_, err := actions.Run(ctx)
		return err
	})
	runner.Every(compliance.ActionsJob, time.Minute)
	runner.Register("events.prune", func(ctx context.Context, _ *mdmd.Job) error {
		// Events every consumer has read are kept a week for inspection.
		_, err := st.PruneEvents(ctx, time.Now().Add(-7*24*time.Hour))
		return err
	})
	runner.Every("events.prune", 24*time.Hour)
	runner.Register("console.prune_sessions", func(ctx context.Context, _ *mdmd.Job) error {
		// Sessions idle past the console's timeout can never be used again.
		_, err := st.PruneConsoleSessions(ctx, time.Now().Add(-console.DefaultIdleTimeout))
		return err
	})
	runner.Every("console.prune_sessions", time.Hour)
	hooks := webhooks.New(st, box, webhooks.Options{Jobs: runner, Replica: s.replica, Logger: s.log.With("component", "webhooks")})
	runner.Register(webhooks.FanoutJob, hooks.RunFanout)
	runner.Every(webhooks.FanoutJob, 5*time.Second)
	runner.Register(webhooks.DeliverJob, hooks.RunDeliver)
	runner.Every(webhooks.DeliverJob, 5*time.Second)
	runner.Register(webhooks.PruneJob, hooks.RunPrune)
	runner.Every(webhooks.PruneJob, 24*time.Hour)

	// Shared signals (SSF/CAEP) and compliance tokens sign with their own
	// key rings, each published as a JWKS and rotated by a job.
	ssfKeys := ssf.NewKeyring(st, box, s.log.With("component", "ssf"))
	tokenKeys := jwtsign.New(st, box, jwtsign.Options{Ring: "compliance", MaxTokenLifetime: compliance.MaxTokenLifetime,
		Logger: s.log.With("component", "compliance-tokens")})
	for _, k := range []*jwtsign.Keyring{ssfKeys, tokenKeys} {
		if err := k.Init(ctx); err != nil {
			return fmt.Errorf("%s signing key: %w", k.Ring(), err)
		}
		runner.Register(k.JobKind(), k.RotateJob)
		runner.Every(k.JobKind(), 24*time.Hour) // rotates a key once it is 30 days old
	}
	transmitter, err := ssf.New(st, ssf.Options{Issuer: s.cfg.PublicURL, Keys: ssfKeys, Box: box,
		Replica: s.replica, Logger: s.log.With("component", "ssf"), AllowPrivateTargets: s.cfg.AllowPrivateReceivers})
	if err != nil {
		return err
	}
	runner.Register(ssf.PruneJob, transmitter.PruneRun)
	runner.Every(ssf.PruneJob, time.Hour)
	tokens := &compliance.Tokens{Service: complianceSvc, Store: st, Keys: tokenKeys, Issuer: s.cfg.PublicURL}

	// Every job kind is registered; start the runner.
	bg.Add(4)
	go func() {
		// SSF fan-out and push, every second, safe on every replica.
		defer bg.Done()
		transmitter.Run(ctx)
	}()
	go func() {
		defer bg.Done()
		runner.Run(ctx)
	}()
	go func() {
		// Devices whose posture, threat level, enrollment or groups
		// changed are evaluated within one poll, on whichever replica
		// claims them first.
		defer bg.Done()
		complianceSvc.RunDirty(ctx, s.cfg.JobPoll)
	}()
	go func() {
		defer bg.Done()
		mdmSvc.Run(ctx)
	}()

	api := web.NewAPI(web.APIDeps{Devices: st, Groups: st, Commands: st, Tokens: st, Audit: st,
		Logger: s.log.With("component", "api"), Modules: []web.Module{enrollment, pusher, cmds, approvalSvc, bulkSvc, auditExportAPI{st: st}, profileSvc,
			enroll.RenewalAPI{Service: enrollment, Store: st, Cmds: cmds}, androidSvc, androidCmds,
			android.PolicyAPI{Service: androidSvc, Store: st}, compliance.API{Service: complianceSvc, Store: st, Jobs: runner},
			compliance.MTDAPI{Store: st, Wake: complianceSvc.Wake}, actions, hooks, transmitter, tokens, users.API{Store: st}},
		Membership: profileSvc, Version: Version, PublicURL: s.cfg.PublicURL})
	s.mu.Lock()
	s.commands, s.pusher, s.apiRoutes, s.compliance = cmds, pusher, api.Routes(), complianceSvc
	s.mu.Unlock()
	httpLog := s.log.With("component", "http")
	con, err := s.newConsole(consoleDeps{st: st, cmds: cmds, approvals: approvalSvc, box: box, enroll: enrollment,
		android: androidSvc, push: pusher, compliance: complianceSvc, profiles: profileSvc, webhooks: hooks, transmitter: transmitter, bulk: bulkSvc})
	if err != nil {
		return fmt.Errorf("web console: %w", err)
	}
	s.root.SetReady(s.routes(api, enrollment, mdmSvc, androidSvc, con, transmitter.RegisterPublic, func(r chi.Router) {
		r.Get(compliance.JWKSPath, tokenKeys.Handler().ServeHTTP)
		r.HandleFunc(compliance.DeviceTokenPath, tokens.DeviceHandler(mdmSvc, func(w http.ResponseWriter, r *http.Request, err error) {
			web.WriteError(w, r, httpLog, err)
		}))
	}), st.Ping)
	s.mu.Lock()
	s.conRoutes = con.Routes() // filled in by routes
	s.mu.Unlock()
	s.log.Info("ready", "database", storage.Redact(s.cfg.DatabaseURL), "dialect", st.DialectName())
	s.printWelcome(cred)
	close(s.ready)
	return nil
}

func (s *Server) printWelcome(cred *adminCredential) {
	fmt.Fprintf(s.stdout, "mdmd is ready.\n  Log in at:  %s/\n  Admin API:  %s/api/v1\n  Database:   %s\n",
		s.cfg.PublicURL, s.cfg.PublicURL, storage.Redact(s.cfg.DatabaseURL))
	if cred != nil {
		fmt.Fprintf(s.stdout, "\nFirst start: administrator created. These credentials are shown only now:\n"+
			"  username:   %s\n  password:   %s\n  API token:  %s  (role admin, expires %s)\n"+
			"  try:        curl -H 'Authorization: Bearer %s' %s/api/v1/me\n",
			cred.Username, cred.Password, cred.Token, cred.Expires.Format("2006-01-02"), cred.Token, s.cfg.PublicURL)
	}
}

func (s *Server) secretBox() (*secret.Box, error) {
	var key []byte
	var err error
	if s.cfg.SecretKey != "" {
		key, err = secret.ParseKey(s.cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("invalid MDMD_SECRET_KEY: %w", err)
		}
	} else {
		var created bool
		key, created, err = secret.LoadOrCreateKeyFile(s.cfg.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("invalid --secret-key-file (MDMD_SECRET_KEY_FILE): %w", err)
		}
		if created {
			s.log.Info("generated secret key file; back it up: without it the database's secrets cannot be opened",
				"path", s.cfg.SecretKeyFile)
		}
	}
	box, err := secret.New(key)
	if err != nil {
		return nil, fmt.Errorf("invalid MDMD_SECRET_KEY: %w", err)
	}
	return box, nil
}

// checkSecretKey makes sure every replica seals with the same key: the
// first start stores a value sealed with it, later starts must open it.
func checkSecretKey(ctx context.Context, st *storage.Store, box *secret.Box) error {
	sealed, err := box.Seal([]byte("mdmd secret key check"), "key-check")
	if err != nil {
		return err
	}
	stored, _, err := st.CreateSettingIfAbsent(ctx, "secret_key_check", base64.StdEncoding.EncodeToString(sealed))
	if err != nil {
		return fmt.Errorf("secret key check: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(stored)
	if err == nil {
		_, err = box.Open(raw, "key-check")
	}
	if err != nil {
		return fmt.Errorf("invalid MDMD_SECRET_KEY / secret key file (key id %s): it is not the key this database was created with", box.ID)
	}
	return nil
}

type adminCredential struct {
	Username, Password, Token string
	Expires                   time.Time
}

// bootstrapAdmin creates the first administrator on a new database and
// returns its credentials; on later starts (or on the replica that lost the
// race) it returns nil. Only hashes are stored.
func bootstrapAdmin(ctx context.Context, st *storage.Store) (*adminCredential, error) {
	var cred *adminCredential
	err := st.Tx(ctx, func(tx *storage.Store) error {
		_, created, err := tx.CreateSettingIfAbsent(ctx, "bootstrap_admin", tx.Now().Format(time.RFC3339))
		if err != nil || !created {
			return err
		}
		c := &adminCredential{Username: "admin", Password: auth.RandomPassword()}
		hash, err := auth.HashPassword(c.Password)
		if err != nil {
			return err
		}
		u := &mdmd.AdminUser{Username: c.Username, PasswordHash: hash, Role: mdmd.RoleAdmin}
		if err := tx.CreateAdminUser(ctx, u); err != nil {
			return err
		}
		secretTok, tokHash := auth.NewToken()
		c.Token, c.Expires = secretTok, tx.Now().Add(30*24*time.Hour)
		t := &mdmd.APIToken{Name: "bootstrap", Prefix: auth.DisplayPrefix(secretTok), Hash: tokHash,
			Role: mdmd.RoleAdmin, OwnerUserID: u.ID, CreatedBy: "system", ExpiresAt: c.Expires}
		if err := tx.CreateAPIToken(ctx, t); err != nil {
			return err
		}
		cred = c
		return tx.AppendAudit(ctx, &mdmd.AuditEvent{ActorType: mdmd.ActorSystem, Actor: "mdmd", Action: "admin.bootstrap",
			TargetType: "admin_user", TargetID: u.ID, Outcome: mdmd.OutcomeSuccess,
			Details: []byte(`{"username":"admin","token":"` + t.ID + `"}`)})
	})
	return cred, err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
