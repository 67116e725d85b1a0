-- Process-wide settings: key fingerprints that every machine must share.

-- name: get_setting(key)$
SELECT value FROM settings WHERE key = :key;

-- name: insert_setting(key, value)!
INSERT INTO settings (key, value) VALUES (:key, :value);

-- name: list_settings()
SELECT key, value FROM settings ORDER BY key;
