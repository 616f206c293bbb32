-- +goose Up
-- Configuration profiles. payload is the unsigned .mobileconfig XML; it is
-- signed when installed. version goes up on every change.
CREATE TABLE profiles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    identifier  TEXT NOT NULL UNIQUE,
    platform    TEXT NOT NULL CHECK (platform IN ('ios')),
    kind        TEXT NOT NULL CHECK (kind IN ('passcode', 'restrictions', 'wifi', 'vpn', 'custom')),
    settings    BLOB,
    payload     BLOB NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL
);

CREATE TABLE profile_assignments (
    profile_id  TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    target_type TEXT NOT NULL CHECK (target_type IN ('device', 'group')),
    target_id   TEXT NOT NULL,
    created_at  DATETIME NOT NULL,
    PRIMARY KEY (profile_id, target_type, target_id)
);
CREATE INDEX profile_assignments_target ON profile_assignments (target_type, target_id);

-- What mdmd installed on each device, and where that stands.
CREATE TABLE device_profiles (
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    identifier  TEXT NOT NULL,
    profile_id  TEXT REFERENCES profiles (id) ON DELETE SET NULL,
    version     INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('installing', 'installed', 'removing', 'failed')),
    command_id  TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    updated_at  DATETIME NOT NULL,
    PRIMARY KEY (device_id, identifier)
);
CREATE INDEX device_profiles_command ON device_profiles (command_id);
CREATE INDEX device_profiles_profile ON device_profiles (profile_id);

-- +goose Down
DROP TABLE device_profiles;
DROP TABLE profile_assignments;
DROP TABLE profiles;
