-- +goose Up
-- Console sessions. Only the SHA-256 of the session ID (a random 256-bit
-- value kept in the browser's cookie) is stored, so a database reader
-- cannot take over a session. Any replica can serve any session.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    -- mfa_done is false while the second factor is still to be given.
    mfa_done     BOOLEAN NOT NULL DEFAULT 0,
    created_at   DATETIME NOT NULL,
    last_seen_at DATETIME NOT NULL,
    expires_at   DATETIME NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- A console user's TOTP second factor (RFC 6238). The secret is sealed
-- with the server's secret key; last_step is the time step of the last
-- accepted code, so a code is never accepted twice.
CREATE TABLE admin_totp (
    user_id       TEXT PRIMARY KEY REFERENCES admin_users (id) ON DELETE CASCADE,
    secret_sealed BLOB NOT NULL,
    confirmed_at  DATETIME,
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    DATETIME NOT NULL
);

-- The console filters the device list by compliance state, in id order.
CREATE INDEX device_compliance_state_device ON device_compliance (state, device_id);
CREATE INDEX devices_ownership ON devices (ownership, id);
-- Sorted by name, keyset-paged by (name, id).
CREATE INDEX devices_name ON devices (name, id);

-- +goose Down
DROP INDEX devices_name;
DROP INDEX devices_ownership;
DROP INDEX device_compliance_state_device;
DROP TABLE admin_totp;
DROP TABLE console_sessions;
