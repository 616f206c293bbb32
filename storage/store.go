// Package storage persists mdmd's domain in a SQL database through gorm:
// an embedded SQLite file (pure Go, no cgo) by default, PostgreSQL in
// production. The schema comes only from the SQL migrations in
// migrations/; both dialects pass one conformance suite (storagetest).
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// Store is the database. A Store returned by Tx is bound to a transaction.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect migrations.Dialect
	path    string // the SQLite file
	now     func() time.Time
}

// Options tune a Store.
type Options struct {
	// MaxOpenConns bounds the pool; idle connections are kept up to the same
	// number so that a busy server does not churn connections.
	MaxOpenConns int
	// SlowQuery is the threshold above which a query is logged at warn.
	SlowQuery time.Duration
	Logger    *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Dialect reports which database a URL names: postgres:// and
// postgresql:// are PostgreSQL; sqlite: (sqlite:relative/path or
// sqlite:///absolute/path) is SQLite.
func Dialect(dbURL string) (migrations.Dialect, error) {
	switch {
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return migrations.Postgres, nil
	case strings.HasPrefix(dbURL, "sqlite:"):
		return migrations.SQLite, nil
	}
	return "", fmt.Errorf("unsupported database URL %q: want postgres://... or sqlite:PATH", redact(dbURL))
}

// SQLitePath returns the file a sqlite: URL names.
func SQLitePath(dbURL string) string {
	p := strings.TrimPrefix(dbURL, "sqlite:")
	p = strings.TrimPrefix(p, "//")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return p
}

// Open connects to the database the URL names and checks that it answers.
// It does not migrate; call Migrate.
func Open(ctx context.Context, dbURL string, opts Options) (*Store, error) {
	dialect, err := Dialect(dbURL)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SlowQuery == 0 {
		opts.SlowQuery = 500 * time.Millisecond
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	// Every gorm.Open gets its own Config: gorm keeps per-dialect state in
	// it, and a Config shared between two Opens silently loses clauses such
	// as FOR UPDATE SKIP LOCKED on PostgreSQL.
	cfg := &gorm.Config{
		TranslateError: true,
		// Open pings with its own context-free call, which can hang on a
		// database that accepts connections and never answers; mdmd pings
		// below, under a timeout.
		DisableAutomaticPing:   true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return now().UTC().Truncate(time.Microsecond) },
		Logger:                 queryLogger{log: opts.Logger, slow: opts.SlowQuery},
	}
	var dialector gorm.Dialector
	// Migrating holds one connection for its lock and uses another.
	maxConns := max(opts.MaxOpenConns, 2)
	if opts.MaxOpenConns <= 0 {
		maxConns = 0
	}
	switch dialect {
	case migrations.Postgres:
		dialector = postgres.Open(withConnectTimeout(dbURL))
		if maxConns <= 0 {
			maxConns = 20
		}
	case migrations.SQLite:
		path := SQLitePath(dbURL)
		if path == "" {
			return nil, fmt.Errorf("sqlite URL %q names no file", dbURL)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		// WAL lets readers run beside the writer; immediate transactions take
		// the write lock up front so two writers queue on busy_timeout
		// instead of failing on a lock upgrade. Times are always bound in
		// UTC, so their text sorts in time order.
		dsn := "file:" + path + "?" + url.Values{
			"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"},
			// (No _time_format: the driver's default is already SQLite's own
			// format, and setting it makes this driver ignore _txlock.)
			"_txlock": {"immediate"},
		}.Encode()
		dialector = sqlite.Open(dsn)
		if maxConns <= 0 {
			maxConns = 8
		}
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to %s database: %w", dialect, err)
	}
	if dialect == migrations.SQLite {
		// The file holds password hashes and sealed keys: owner only.
		if err := os.Chmod(SQLitePath(dbURL), 0o600); err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	return &Store{db: db, sqlDB: sqlDB, dialect: dialect, path: SQLitePath(dbURL), now: now}, nil
}

// Migrate applies pending schema migrations, serialised across processes:
// by an advisory lock on PostgreSQL, by a lock file beside a SQLite file.
func (s *Store) Migrate(ctx context.Context, log *slog.Logger) ([]int64, error) {
	if s.dialect == migrations.SQLite {
		unlock, err := lockFile(s.path + ".migrate-lock")
		if err != nil {
			return nil, fmt.Errorf("lock for migration: %w", err)
		}
		defer unlock()
	}
	return migrations.Up(ctx, s.sqlDB, s.dialect, log)
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.sqlDB.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

// DB returns the underlying pool (metrics, diagnostics).
func (s *Store) DB() *sql.DB { return s.sqlDB }

// DialectName reports the store's dialect.
func (s *Store) DialectName() migrations.Dialect { return s.dialect }

// Tx runs fn in a transaction: it commits if fn returns nil and rolls back
// otherwise. The Store passed to fn must be used for every statement of the
// transaction. Nested calls use savepoints.
func (s *Store) Tx(ctx context.Context, fn func(tx *Store) error) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return fn(&Store{db: tx, sqlDB: s.sqlDB, dialect: s.dialect, path: s.path, now: s.now})
	})
}

func (s *Store) table(ctx context.Context, name string) *gorm.DB {
	return s.db.WithContext(ctx).Table(name)
}

// Now returns the store's clock reading, in UTC with the microsecond
// precision both databases keep.
func (s *Store) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// utc normalises a time for storage: UTC (SQLite compares times as text)
// at the microsecond precision both databases keep.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := utc(*t)
	return &u
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// dbErr translates a database error into a typed mdmd error.
func dbErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var me *mdmd.Error
	var netErr net.Error
	switch {
	case errors.As(err, &me):
		return err
	case errors.Is(err, gorm.ErrRecordNotFound):
		return mdmd.Errorf(mdmd.ENotFound, "%s not found", what)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return mdmd.Errorf(mdmd.EConflict, "%s already exists", what)
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return mdmd.Errorf(mdmd.ENotFound, "%s refers to a record that does not exist", what)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &netErr), errors.Is(err, sql.ErrConnDone):
		return &mdmd.Error{Code: mdmd.EUnavailable, Message: "the database is unreachable"}
	}
	return fmt.Errorf("storage: %s: %w", what, err)
}

func limitOf(n int) int {
	if n <= 0 {
		return mdmd.DefaultPageSize
	}
	if n > mdmd.MaxPageSize {
		return mdmd.MaxPageSize
	}
	return n
}

// escapeLike escapes LIKE wildcards; patterns use ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// withConnectTimeout adds a 5-second connect_timeout to a PostgreSQL URL
// that sets none, so that a dead host fails instead of hanging.
func withConnectTimeout(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redact hides a password in a database URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Redact hides the password of a database URL for logs and errors.
func Redact(dbURL string) string { return redact(dbURL) }
