-- Offboarding (issue #9, DESIGN.md invariant 4): the request and its proof, and the purge of a tenant's rows.

-- One row per offboarding request, from DELETE /v1/tenants/{t} until the proof; a cancelled request goes.
-- A platform table (on the RLS allow-list): its rows must outlive the purge, which removes the tenant's rows
-- from every table with a `tenant_id` column, so the tenant's id is in `tenant`. It holds ids, times, counts
-- and object locations: nothing the tenant wrote.
CREATE TABLE tenant_offboardings (
  tenant                  text        PRIMARY KEY REFERENCES tenants (id),
  -- What a cancel restores.
  previous_status         text        NOT NULL CHECK (previous_status IN ('active', 'suspended')),
  requested_at            timestamptz NOT NULL,
  -- `operator:<id>` (or `system`)
  requested_by            text        NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 80),
  -- The end of the grace period: confirming before it is refused.
  confirmable_at          timestamptz NOT NULL,
  -- The first confirm past its checks: from here the request can no longer be cancelled.
  confirmed_at            timestamptz,
  confirmed_by            text        CHECK (char_length(confirmed_by) BETWEEN 1 AND 80),
  -- Progress of the steps outside the database, so a confirm that stopped half way finishes with all of it.
  -- {location, sha256, events}: the proof names the archive's digest, so the signed platform chain vouches for it.
  audit_archive           jsonb,
  agents_revoked          integer     NOT NULL DEFAULT 0 CHECK (agents_revoked >= 0),
  backup_objects_deleted  integer     NOT NULL DEFAULT 0 CHECK (backup_objects_deleted >= 0),
  backup_escrow_destroyed boolean     NOT NULL DEFAULT false,
  -- The purge committed, with the proof that the platform audit event `tenant.offboard` carries too.
  completed_at            timestamptz,
  proof                   jsonb,
  -- VACUUM FULL and CHECKPOINT of the tables that held the tenant's rows, after the purge.
  vacuumed_at             timestamptz,
  CHECK ((completed_at IS NULL) = (proof IS NULL)),
  CHECK (completed_at IS NULL OR confirmed_at IS NOT NULL),
  CHECK (vacuumed_at IS NULL OR completed_at IS NOT NULL)
);
ALTER TABLE tenant_offboardings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_offboardings FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON tenant_offboardings
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_offboardings TO {{app_role}};

-- Audit events stay append-only for the app role (retention releases old ones, nothing else). The purge
-- below runs as this migration's owner and may delete the events of a tenant that is being offboarded; the
-- owner is named here because FORCE RLS filters the owner too when it is not a superuser.
DROP POLICY retention_only ON audit_events;
DO $$
BEGIN
  EXECUTE format($p$CREATE POLICY retention_only ON audit_events AS RESTRICTIVE FOR DELETE USING (
    EXISTS (SELECT 1 FROM audit_heads h WHERE h.tenant_id = audit_events.tenant_id AND audit_events.seq <= h.pruned_through
              AND h.retention_days IS NOT NULL AND audit_events.occurred_at < now() - make_interval(days => h.retention_days))
    OR (current_user = %L AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = audit_events.tenant_id AND t.status = 'offboarding')))$p$, current_user);
END $$;

-- The keys module creates a missing keyring on first use; an offboarded tenant (its keyring purged) must
-- never get one again, whatever path asks for its keys.
CREATE POLICY not_offboarded ON tenant_keyrings AS RESTRICTIVE FOR INSERT
  WITH CHECK (EXISTS (SELECT 1 FROM tenants t WHERE t.id = tenant_keyrings.tenant_id AND t.status <> 'deleted'));

-- Deletes every row of an offboarded tenant from every tenant table and answers the count per table.
-- The tables come from the catalog (every table of the public schema with a `tenant_id` column), so a
-- table added later is purged without changing this. Children go before their parents (a table is purged
-- once no other remaining tenant table references it), so no cascade deletes rows behind the counts.
--
-- SECURITY DEFINER: the app role lacks DELETE on the audit, key and session tables on purpose; this is its
-- one way to remove them, and only once the tenant is `offboarding` with its keyring destroyed (the data
-- key destruction comes first, in the same transaction). It runs under the tenant's own RLS context, which
-- the tenant policies admit even when the owner is not a superuser, and puts the caller's context back.
CREATE FUNCTION bulwark_purge_tenant(p_tenant text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_tenant_context text := current_setting('app.tenant_id', true);
  v_scope_context text := current_setting('app.scope', true);
  v_status text;
  v_destroyed timestamptz;
  v_remaining oid[];
  v_ready oid[];
  v_table oid;
  v_name name;
  v_left boolean;
  v_count bigint;
  v_counts jsonb := '{}'::jsonb;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant, true);
  PERFORM set_config('app.scope', '', true);
  SELECT status INTO v_status FROM public.tenants WHERE id = p_tenant;
  IF v_status IS DISTINCT FROM 'offboarding' THEN
    RAISE EXCEPTION 'tenant % is not being offboarded', p_tenant USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT destroyed_at INTO v_destroyed FROM public.tenant_keyrings WHERE tenant_id = p_tenant;
  IF v_destroyed IS NULL THEN
    RAISE EXCEPTION 'the keyring of tenant % is not destroyed', p_tenant USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;

  SELECT coalesce(array_agg(c.oid ORDER BY c.relname), '{}') INTO v_remaining
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
     AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped);
  WHILE cardinality(v_remaining) > 0 LOOP
    SELECT coalesce(array_agg(t.oid ORDER BY t.oid), '{}') INTO v_ready
      FROM unnest(v_remaining) AS t(oid)
     WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k
                        WHERE k.contype = 'f' AND k.confrelid = t.oid AND k.conrelid <> t.oid AND k.conrelid = ANY (v_remaining));
    IF cardinality(v_ready) = 0 THEN
      RAISE EXCEPTION 'the tenant tables reference each other in a cycle; cannot order the purge';
    END IF;
    FOREACH v_table IN ARRAY v_ready LOOP
      SELECT relname INTO v_name FROM pg_class WHERE oid = v_table;
      EXECUTE format('DELETE FROM public.%I WHERE tenant_id = $1', v_name) USING p_tenant;
      GET DIAGNOSTICS v_count = ROW_COUNT;
      -- A policy that filtered the DELETE (rather than refusing it) must not pass for a purge.
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM public.%I WHERE tenant_id = $1)', v_name) USING p_tenant INTO v_left;
      IF v_left THEN
        RAISE EXCEPTION 'rows of tenant % remain in %', p_tenant, v_name USING ERRCODE = 'insufficient_privilege';
      END IF;
      v_counts := v_counts || jsonb_build_object(v_name::text, v_count);
    END LOOP;
    v_remaining := array(SELECT unnest(v_remaining) EXCEPT SELECT unnest(v_ready));
  END LOOP;

  PERFORM set_config('app.tenant_id', coalesce(v_tenant_context, ''), true);
  PERFORM set_config('app.scope', coalesce(v_scope_context, ''), true);
  RETURN v_counts;
END
$$;
REVOKE ALL ON FUNCTION bulwark_purge_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulwark_purge_tenant(text) TO {{app_role}};
