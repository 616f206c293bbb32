-- +goose Up
-- Enrollment links: what an admin hands to a user. token_hash is the
-- SHA-256 of the secret in the link's URL.
CREATE TABLE enrollment_links (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    platform    TEXT NOT NULL CHECK (platform IN ('ios', 'android')),
    one_time    BOOLEAN NOT NULL,
    ownership   TEXT NOT NULL CHECK (ownership IN ('corporate', 'personal')),
    owner_user  TEXT NOT NULL DEFAULT '',
    uses        INTEGER NOT NULL DEFAULT 0,
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

-- One-time SCEP challenges: one per profile download, bound to a link; or
-- bound to an enrolled device, to renew its identity.
CREATE TABLE scep_challenges (
    challenge_hash     TEXT PRIMARY KEY,
    enrollment_link_id TEXT REFERENCES enrollment_links (id) ON DELETE CASCADE,
    device_id          TEXT REFERENCES devices (id) ON DELETE CASCADE,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    used_at            TIMESTAMPTZ,
    CHECK ((enrollment_link_id IS NULL) <> (device_id IS NULL))
);
CREATE INDEX scep_challenges_expiry ON scep_challenges (expires_at);
CREATE INDEX scep_challenges_device ON scep_challenges (device_id);

-- Device identity certificates issued by mdmd's CA. udid is bound at the
-- device's Authenticate; renews names the certificate a renewal replaces.
CREATE TABLE device_certs (
    fingerprint        TEXT PRIMARY KEY,
    serial             TEXT NOT NULL UNIQUE,
    subject            TEXT NOT NULL DEFAULT '',
    not_before         TIMESTAMPTZ NOT NULL,
    not_after          TIMESTAMPTZ NOT NULL,
    enrollment_link_id TEXT REFERENCES enrollment_links (id) ON DELETE SET NULL,
    renews             TEXT,
    udid               TEXT,
    issued_at          TIMESTAMPTZ NOT NULL,
    revoked_at         TIMESTAMPTZ
);
CREATE INDEX device_certs_udid ON device_certs (udid);

-- The Apple side of an enrolled device.
CREATE TABLE apple_enrollments (
    device_id           TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    udid                TEXT NOT NULL UNIQUE,
    cert_fingerprint    TEXT NOT NULL UNIQUE,
    enrollment_link_id  TEXT,
    topic               TEXT NOT NULL DEFAULT '',
    push_token          TEXT NOT NULL DEFAULT '',
    push_magic          TEXT NOT NULL DEFAULT '',
    unlock_token_sealed BYTEA,
    bootstrap_sealed    BYTEA,
    token_valid         BOOLEAN NOT NULL DEFAULT FALSE,
    last_checkin_at     TIMESTAMPTZ,
    last_push_at        TIMESTAMPTZ,
    last_push_result    TEXT NOT NULL DEFAULT '',
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

-- The latest security posture of each device, from any platform.
CREATE TABLE device_postures (
    device_id                TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    os_version               TEXT NOT NULL DEFAULT '',
    build_version            TEXT NOT NULL DEFAULT '',
    security_patch           TEXT NOT NULL DEFAULT '',
    passcode_present         BOOLEAN,
    passcode_compliant       BOOLEAN,
    encrypted                BOOLEAN,
    supervised               BOOLEAN,
    activation_lock          BOOLEAN,
    compromised              BOOLEAN,
    details                  TEXT, -- a JSON object, merged key by key
    observed_at              TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

-- The outcome of every push sent to APNs.
CREATE TABLE push_log (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL,
    status      INTEGER NOT NULL,
    apns_id     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    result      TEXT NOT NULL CHECK (result IN ('sent', 'unregistered', 'rejected', 'failed'))
);
CREATE INDEX push_log_device ON push_log (device_id, at);
CREATE INDEX push_log_at ON push_log (at);

-- +goose Down
DROP TABLE push_log;
DROP TABLE device_postures;
DROP TABLE apple_enrollments;
DROP TABLE device_certs;
DROP TABLE scep_challenges;
DROP TABLE enrollment_links;
