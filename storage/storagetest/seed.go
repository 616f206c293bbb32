package storagetest

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mdmd/mdmd/storage"
)

// FleetSize is the number of devices benchmarks seed: MDMD_BENCH_DEVICES,
// or def.
func FleetSize(def int) int {
	if v, err := strconv.Atoi(os.Getenv("MDMD_BENCH_DEVICES")); err == nil && v > 0 {
		return v
	}
	return def
}

// SeedFleet fills a PostgreSQL store with n enrolled devices for
// benchmarks, in SQL (through the API it would take far longer than what
// is measured): half iPhones, half Android devices, a third personally
// owned, 5,000 owners, last seen 0 to 9 days ago; each with posture (one in
// seven on an old OS, one in eleven without a passcode, one in thirteen
// compromised); a compliance state for all but one in fifty (one in ten
// noncompliant); and one in seven in group "g1" (finance). Device IDs are
// dev-0000001 and up.
func SeedFleet(tb testing.TB, st *storage.Store, n int) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	seed := []string{
		`INSERT INTO devices (id, platform, name, udid, amapi_name, ownership, enrollment_state, owner_user, model, last_seen_at, created_at, updated_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END, 'device ' || md5(i::text),
       CASE WHEN i % 2 = 0 THEN 'udid-' || i END, CASE WHEN i % 2 = 1 THEN 'enterprises/E/devices/' || i END,
       CASE WHEN i % 3 = 0 THEN 'personal' ELSE 'corporate' END, 'enrolled', 'user' || (i % 5000) || '@example.com',
       'model ' || (i % 20), $1::timestamptz - (i % 10) * interval '1 day', $1, $1
FROM generate_series(1, $2) AS i`,
		`INSERT INTO device_postures (device_id, os_version, security_patch, passcode_present, passcode_compliant, encrypted, compromised, details, observed_at, updated_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 7 = 0 THEN '16.4' ELSE '18.1' END, '2026-10-01', i % 11 <> 0, true, true, i % 13 = 0,
       '{"device_posture":"SECURE"}', $1, $1
FROM generate_series(1, $2) AS i`,
		`INSERT INTO device_compliance (device_id, state, rules, evaluated_at, changed_at)
SELECT 'dev-' || lpad(i::text, 7, '0'), CASE WHEN i % 10 = 0 THEN 'noncompliant' WHEN i % 97 = 0 THEN 'in_grace' ELSE 'compliant' END,
       '[]', $1::timestamptz, $1::timestamptz
FROM generate_series(1, $2) AS i WHERE i % 50 <> 0`,
		`INSERT INTO groups (id, name, created_at, updated_at) SELECT 'g1', 'finance', $1, $1 WHERE $2::int > 0`,
		`INSERT INTO device_groups (group_id, device_id) SELECT 'g1', 'dev-' || lpad(i::text, 7, '0') FROM generate_series(1, $2::int) AS i WHERE i % 7 = 0 AND $1::timestamptz IS NOT NULL`,
	}
	for _, q := range seed {
		if _, err := st.DB().ExecContext(ctx, q, now, n); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := st.DB().ExecContext(ctx, "ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}
