// Command mdmd-bench measures mdmd with simulated iPhones over loopback:
// enrollments/s, idle check-ins/s, command round trips/s (deliver and
// acknowledge) with p50/p99 latency and the CPU time mdmd and PostgreSQL
// spend on each, and how long one command takes to reach 10,000 devices
// through the fake APNs. mdmd runs as a separate process (this binary
// re-executed), so its CPU time is measured apart from the load
// generator's, whose RSA work is excluded: device keys are generated and
// result bodies signed before the timed phases, and idle check-ins reuse
// the signature of their identical body.
//
//	go run ./cmd/mdmd-bench                                  # embedded SQLite
//	go run ./cmd/mdmd-bench -database-url postgres://postgres@127.0.0.1:5432/test?sslmode=disable
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/app"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/apple/fakeapns"
	"github.com/mdmd/mdmd/storage"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "__mdmd" {
		// The server under test, in its own process.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := app.Run(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mdmd-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	dbURL       string
	devices     int
	concurrency int
	duration    time.Duration
	rounds      int
	pushDevices int

	android        bool
	androidDevices int
	reports        int
	lockDevices    int
	amapiRate      int
	amapiWindow    time.Duration
}

func run() error {
	var c config
	flag.StringVar(&c.dbURL, "database-url", "", "PostgreSQL URL (a schema of its own is created and dropped); empty: a fresh SQLite file")
	flag.IntVar(&c.devices, "devices", 300, "simulated iPhones to enroll")
	flag.IntVar(&c.concurrency, "concurrency", 32, "concurrent device connections")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of the idle check-in phase")
	flag.IntVar(&c.rounds, "rounds", 4, "commands per device in the round-trip phase")
	flag.IntVar(&c.pushDevices, "push-devices", 10000, "devices one command is pushed to in the push phase (0 skips it)")
	flag.BoolVar(&c.android, "android", true, "run the Android phases")
	flag.IntVar(&c.androidDevices, "android-devices", 500, "Android devices whose status reports are ingested")
	flag.IntVar(&c.reports, "reports", 20000, "STATUS_REPORT pushes in the ingest phase")
	flag.IntVar(&c.lockDevices, "android-lock", 1000, "Android devices locked through the rate-limited queue (0 skips it)")
	flag.IntVar(&c.amapiRate, "amapi-rate", 900, "AMAPI calls allowed per -amapi-rate-window")
	flag.DurationVar(&c.amapiWindow, "amapi-rate-window", 100*time.Second, "the window of -amapi-rate")
	flag.Parse()

	tmp, err := os.MkdirTemp("", "mdmd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dbURL, dialect := c.dbURL, "sqlite"
	if dbURL == "" {
		dbURL = "sqlite:" + filepath.Join(tmp, "mdmd.db")
	} else {
		dialect = "postgres"
		var drop func()
		if dbURL, drop, err = freshSchema(dbURL); err != nil {
			return err
		}
		defer drop()
	}

	fake := fakeapns.Start()
	defer fake.Close()
	caFile := filepath.Join(tmp, "apns-ca.pem")
	if err := fake.CAFile(caFile); err != nil {
		return err
	}
	amapi := fakeamapi.Start()
	defer amapi.Close()
	srv, err := startServer(tmp, dbURL, fake.URL(), caFile, "--amapi-endpoint", amapi.URL(),
		"--amapi-rate", strconv.Itoa(c.amapiRate), "--amapi-rate-window", c.amapiWindow.String(), "--workers", "16")
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("mdmd-bench: %s, %d devices, %d connections, %d CPUs, mdmd pid %d\n", dialect, c.devices, c.concurrency, runtime.NumCPU(), srv.cmd.Process.Pid)

	api := &apiClient{base: srv.base, token: srv.token}
	topic := "com.apple.mgmt.External.bench"
	certPEM, keyPEM, err := fakeapns.PushCertificate(topic, 365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := api.do("PUT", "/api/v1/apple/push-certificate", map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)}, nil); err != nil {
		return err
	}
	var link struct{ URL string }
	if err := api.do("POST", "/api/v1/enrollment-links", map[string]any{"one_time": false}, &link); err != nil {
		return err
	}
	trust, err := caPool(srv.base)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.concurrency * 2, MaxConnsPerHost: c.concurrency * 2}}

	// Device keys, generated before anything is timed.
	fmt.Printf("generating %d device keys…\n", c.devices)
	keys := make([]*rsa.PrivateKey, c.devices)
	parallel(c.devices, runtime.NumCPU(), func(i int) error {
		var err error
		keys[i], err = rsa.GenerateKey(rand.Reader, 2048)
		return err
	})
	sims := make([]*applesim.Device, c.devices)
	for i := range sims {
		sims[i] = applesim.New(fmt.Sprintf("00008110-BENCH%011d", i), fmt.Sprintf("BN%06d", i), applesim.DefaultPosture)
		sims[i].HTTP = client
		sims[i].UseKey(keys[i])
	}

	var rows []string
	// Enrollment: profile download, SCEP, Authenticate, TokenUpdate.
	m := newMeter(srv.cmd.Process.Pid, dialect == "postgres")
	lat := parallel(c.devices, c.concurrency, func(i int) error { return sims[i].Enroll(context.Background(), link.URL, trust) })
	rows = append(rows, m.row("enrollment (profile, SCEP, Authenticate, TokenUpdate)", c.devices, lat))

	// Idle check-ins: signed Idle reports with nothing queued.
	idle := make([]signedBody, c.devices)
	for i, s := range sims {
		body, _ := plist.Marshal(map[string]string{"UDID": s.UDID, "Status": "Idle"})
		sig, err := s.Sign(body)
		if err != nil {
			return err
		}
		idle[i] = signedBody{body, sig}
	}
	m = newMeter(srv.cmd.Process.Pid, dialect == "postgres")
	var next atomic.Int64
	deadline := time.Now().Add(c.duration)
	lat = loop(c.concurrency, deadline, func() error {
		i := int(next.Add(1)) % c.devices
		status, body, err := put(client, sims[i].ServerURL(), idle[i])
		if err != nil {
			return err
		}
		if status != 200 || len(body) != 0 {
			return fmt.Errorf("idle check-in: %d %q", status, body)
		}
		return nil
	})
	rows = append(rows, m.row("idle check-in (Mdm-Signature verified, queue looked up)", len(lat), lat))

	// Command round trips: each device has rounds SecurityInfo commands;
	// it fetches each (deliver) and answers it (acknowledge).
	acks := make([]map[string]signedBody, c.devices)
	for i, s := range sims {
		var out struct{ Commands []mdmd.Command }
		queries := make([]string, c.rounds)
		for k := range queries {
			queries[k] = "security_info"
		}
		if err := api.do("POST", "/api/v1/devices/"+deviceID(api, s.UDID)+"/actions/query", map[string]any{"queries": queries, "push": false}, &out); err != nil {
			return err
		}
		acks[i] = map[string]signedBody{}
		for _, cmd := range out.Commands {
			body, _ := plist.Marshal(map[string]any{"UDID": s.UDID, "Status": "Acknowledged", "CommandUUID": cmd.ID,
				"SecurityInfo": map[string]any{"HardwareEncryptionCaps": 3, "PasscodePresent": true, "PasscodeCompliant": true, "PasscodeCompliantWithProfiles": true}})
			sig, err := s.Sign(body)
			if err != nil {
				return err
			}
			acks[i][cmd.ID] = signedBody{body, sig}
		}
	}
	m = newMeter(srv.cmd.Process.Pid, dialect == "postgres")
	var trips atomic.Int64
	var tripLat []time.Duration
	var mu sync.Mutex
	parallel(c.devices, c.concurrency, func(i int) error {
		start := time.Now()
		status, body, err := put(client, sims[i].ServerURL(), idle[i])
		for err == nil && status == 200 && len(body) > 0 {
			var cmd struct{ CommandUUID string }
			if err = plist.Unmarshal(body, &cmd); err != nil {
				break
			}
			ack, ok := acks[i][cmd.CommandUUID]
			if !ok {
				return fmt.Errorf("unexpected command %s", cmd.CommandUUID)
			}
			status, body, err = put(client, sims[i].ServerURL(), ack)
			trips.Add(1)
			mu.Lock()
			tripLat = append(tripLat, time.Since(start))
			mu.Unlock()
			start = time.Now()
		}
		if err == nil && status != 200 {
			err = fmt.Errorf("round trip: %d %s", status, body)
		}
		return err
	})
	if int(trips.Load()) != c.devices*c.rounds {
		return fmt.Errorf("%d round trips, want %d", trips.Load(), c.devices*c.rounds)
	}
	rows = append(rows, m.row("command round trip (deliver SecurityInfo, acknowledge, posture stored)", int(trips.Load()), tripLat))

	if c.pushDevices > 0 {
		row, err := pushPhase(api, dbURL, fake, c.pushDevices)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if c.android {
		more, err := androidPhases(c, srv, api, amapi, dialect == "postgres")
		if err != nil {
			return err
		}
		rows = append(rows, more...)
	}

	fmt.Printf("\n| %s | count | per second | p50 | p99 | mdmd CPU / op | PostgreSQL CPU / op |\n|---|---|---|---|---|---|---|\n", dialect)
	for _, r := range rows {
		fmt.Println(r)
	}
	return nil
}

type signedBody struct {
	body []byte
	sig  string
}

func put(c *http.Client, u string, b signedBody) (int, []byte, error) {
	req, _ := http.NewRequest("PUT", u, bytes.NewReader(b.body))
	req.Header.Set("Content-Type", "application/x-apple-aspen-mdm")
	req.Header.Set("Mdm-Signature", b.sig)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// parallel runs fn(0..n-1) on workers goroutines and returns each call's latency.
func parallel(n, workers int, fn func(i int) error) []time.Duration {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				start := time.Now()
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "mdmd-bench: error:", firstErr)
		os.Exit(1)
	}
	return lat
}

// loop runs fn on workers goroutines until the deadline.
func loop(workers int, deadline time.Time, fn func() error) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				if err := fn(); err != nil {
					fmt.Fprintln(os.Stderr, "mdmd-bench: error:", err)
					os.Exit(1)
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// meter measures wall time and the CPU time of mdmd and PostgreSQL.
type meter struct {
	pid     int
	pg      bool
	start   time.Time
	mdmdCPU time.Duration
	pgCPU   time.Duration
}

func newMeter(pid int, pg bool) *meter {
	m := &meter{pid: pid, pg: pg, start: time.Now(), mdmdCPU: procCPU(pid)}
	if pg {
		m.pgCPU = postgresCPU()
	}
	return m
}

func (m *meter) row(name string, n int, lat []time.Duration) string {
	wall := time.Since(m.start)
	mdmdCPU := procCPU(m.pid) - m.mdmdCPU
	pgCol := "–"
	if m.pg {
		pgCol = fmtDur((postgresCPU() - m.pgCPU) / time.Duration(max(n, 1)))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*q))]
	}
	return fmt.Sprintf("| %s | %d | %.0f | %s | %s | %s | %s |", name, n, float64(n)/wall.Seconds(), fmtDur(p(0.5)), fmtDur(p(0.99)),
		fmtDur(mdmdCPU/time.Duration(max(n, 1))), pgCol)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

const clockTicks = 100 // USER_HZ on Linux

// procCPU is a process's user plus system CPU time from /proc.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	k, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(u+k) * time.Second / clockTicks
}

// postgresCPU sums the CPU time of every postgres process.
func postgresCPU() time.Duration {
	entries, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			total += procCPU(pid)
		}
	}
	return total
}

type server struct {
	cmd   *exec.Cmd
	base  string
	token string
}

func startServer(dir, dbURL, apnsURL, caFile string, extra ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"__mdmd", "serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--database-url", dbURL,
		"--apns-url", apnsURL, "--apns-ca-file", caFile, "--log-level", "error", "--db-max-conns", "32"}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd}
	urlRE := regexp.MustCompile(`Log in at:\s+(http://\S+?)/\s*$`)
	tokRE := regexp.MustCompile(`API token:\s+(mdmd_\S+)`)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
			s.base = m[1]
		}
		if m := tokRE.FindStringSubmatch(sc.Text()); m != nil {
			s.token = m[1]
			break
		}
	}
	go io.Copy(io.Discard, out)
	if s.base == "" || s.token == "" {
		cmd.Process.Kill()
		return nil, errors.New("mdmd did not print its URL and token")
	}
	return s, nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

type apiClient struct {
	base, token string
}

func (a *apiClient) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, a.base+path, body)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

var idCache sync.Map

func deviceID(a *apiClient, udid string) string {
	if v, ok := idCache.Load(udid); ok {
		return v.(string)
	}
	var page struct{ Items []mdmd.Device }
	a.do("GET", "/api/v1/devices?q="+url.QueryEscape(udid), nil, &page)
	if len(page.Items) != 1 {
		return "unknown"
	}
	idCache.Store(udid, page.Items[0].ID)
	return page.Items[0].ID
}

func caPool(base string) (*x509.CertPool, error) {
	resp, err := http.Get(base + "/scep?operation=GetCACert")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

// pushPhase seeds n enrolled devices with push tokens in one group and
// times one query to all of them, from the API call until the fake APNs
// has accepted every push.
func pushPhase(api *apiClient, dbURL string, fake *fakeapns.Server, n int) (string, error) {
	ctx := context.Background()
	st, err := storage.Open(ctx, dbURL, storage.Options{MaxOpenConns: 4})
	if err != nil {
		return "", err
	}
	defer st.Close()
	var g mdmd.Group
	if err := api.do("POST", "/api/v1/groups", map[string]string{"name": "push-bench"}, &g); err != nil {
		return "", err
	}
	fmt.Printf("seeding %d devices for the push phase…\n", n)
	now := time.Now().UTC()
	for lo := 0; lo < n; lo += 1000 {
		var ids []string
		err := st.Tx(ctx, func(tx *storage.Store) error {
			for i := lo; i < min(lo+1000, n); i++ {
				udid := fmt.Sprintf("PUSH-%010d", i)
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
				if err := tx.CreateDevice(ctx, d); err != nil {
					return err
				}
				ids = append(ids, d.ID)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		tx, err := st.DB().Begin()
		if err != nil {
			return "", err
		}
		ins, err := tx.Prepare(`INSERT INTO apple_enrollments (device_id, udid, cert_fingerprint, topic, push_token, push_magic, token_valid, created_at, updated_at)
VALUES ($1, $2, $3, 'com.apple.mgmt.External.bench', $4, 'MAGIC', TRUE, $5, $5)`)
		if err != nil {
			return "", err
		}
		for i, id := range ids {
			tok := make([]byte, 32)
			rand.Read(tok)
			if _, err := ins.Exec(id, fmt.Sprintf("PUSH-%010d", lo+i), hex.EncodeToString(tok), hex.EncodeToString(tok), now); err != nil {
				tx.Rollback()
				return "", err
			}
		}
		if err := tx.Commit(); err != nil {
			return "", err
		}
		if err := st.AddGroupMembers(ctx, g.ID, ids); err != nil {
			return "", err
		}
	}
	before := len(fake.Pushes())
	start := time.Now()
	var out struct{ Devices int }
	if err := api.do("POST", "/api/v1/groups/"+g.ID+"/actions/query", map[string]any{"queries": []string{"security_info"}}, &out); err != nil {
		return "", err
	}
	queued := time.Since(start)
	for len(fake.Pushes())-before < n {
		if time.Since(start) > 2*time.Minute {
			return "", fmt.Errorf("only %d of %d pushes after 2 minutes", len(fake.Pushes())-before, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	total := time.Since(start)
	return fmt.Sprintf("| one command to %d devices: queued in %s, all pushes accepted by APNs after %s | %d | %.0f | – | – | – | – |",
		out.Devices, fmtDur(queued), fmtDur(total), n, float64(n)/total.Seconds()), nil
}

// freshSchema creates a schema of its own in the PostgreSQL database.
func freshSchema(base string) (string, func(), error) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	schema := fmt.Sprintf("mdmd_bench_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		return "", nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() { db.Exec("DROP SCHEMA " + schema + " CASCADE"); db.Close() }, nil
}
