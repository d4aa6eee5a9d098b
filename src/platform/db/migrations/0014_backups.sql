-- Backups: the schedule's slots. Backups themselves live in object storage (their manifests are the
-- catalog); this table only makes each scheduled slot run once across every instance: the first to insert
-- the slot takes it.
CREATE TABLE backup_runs (
  slot         timestamptz PRIMARY KEY,
  claimed_at   timestamptz NOT NULL,
  backup_id    text        CHECK (backup_id ~ '^[0-9a-f]{12}$'),
  status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
  finished_at  timestamptz
);
GRANT SELECT, INSERT, UPDATE ON backup_runs TO {{app_role}};
