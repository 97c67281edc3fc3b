-- xdhcpd registrations in PostgreSQL, schema version 1 (docs/registrations-postgres.md).
-- Applied by the daemon when it connects (registrations.postgres.migrate = true) or by
-- `xdhcpd registrations migrate -c CONFIG`, in one transaction, recorded in
-- xdhcpd_schema_migrations.

-- This database's identity: a follower that finds another instance than the one its local
-- copy came from loads everything again. `pruned_through`: the highest change sequence
-- number deleted by xdhcpd_prune_changes (a follower behind it loads everything again).
CREATE TABLE xdhcpd_meta (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    instance       uuid    NOT NULL DEFAULT gen_random_uuid(),
    pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO xdhcpd_meta DEFAULT VALUES;

-- One row per registration (the JSON form's fields, docs/registrations-postgres.md).
CREATE TABLE xdhcpd_registrations (
    id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mac           macaddr UNIQUE,
    client_id     bytea   UNIQUE CHECK (octet_length(client_id) BETWEEN 1 AND 255),
    "group"       text    NOT NULL CHECK ("group" ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    fixed_address inet    UNIQUE CHECK (family(fixed_address) = 4 AND masklen(fixed_address) = 32),
    host_name     text,
    next_server   inet    CHECK (family(next_server) = 4 AND masklen(next_server) = 32),
    boot_file     text    CHECK (octet_length(boot_file) <= 127),
    -- Other options: {"<code>": "<hex bytes>", ...}.
    options       jsonb   NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    CHECK (mac IS NOT NULL OR client_id IS NOT NULL)
);

-- The change feed: every insert, update and delete of a registration, in commit order
-- (writers of xdhcpd_registrations are serialised by a transaction-level advisory lock taken
-- before the sequence numbers are drawn, so a change that commits later has a higher `seq`
-- and a follower that has applied up to `seq` has missed nothing below it).
CREATE TABLE xdhcpd_registration_changes (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    -- The registration as it was (update, delete): its keys.
    old_mac       text,
    old_client_id text,
    -- The registration as it is (insert, update) in xdhcpd's JSON form; NULL: deleted.
    new           jsonb
);

-- A registration in xdhcpd's JSON form (the import / export / API form).
CREATE FUNCTION xdhcpd_registration_json(
    mac macaddr, client_id bytea, grp text, fixed_address inet, host_name text,
    next_server inet, boot_file text, options jsonb
) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'mac', mac::text,
        'client-id', encode(client_id, 'hex'),
        'group', grp,
        'fixed-address', host(fixed_address),
        'host-name', host_name,
        'next-server', host(next_server),
        'boot-file', boot_file,
        'options', CASE WHEN options = '{}'::jsonb THEN NULL ELSE options END))
$$;

-- Statement-level triggers with transition tables: a COPY of a million rows costs one
-- INSERT ... SELECT into the feed and one notification.
CREATE FUNCTION xdhcpd_registrations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7385610017);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, new)
        SELECT NULL, NULL, xdhcpd_registration_json(n.mac, n.client_id, n."group",
               n.fixed_address, n.host_name, n.next_server, n.boot_file, n.options)
        FROM new_rows n ORDER BY n.id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, new)
        SELECT o.mac::text, encode(o.client_id, 'hex'),
               xdhcpd_registration_json(n.mac, n.client_id, n."group",
               n.fixed_address, n.host_name, n.next_server, n.boot_file, n.options)
        FROM old_rows o JOIN new_rows n ON n.id = o.id ORDER BY n.id;
    ELSE
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, new)
        SELECT o.mac::text, encode(o.client_id, 'hex'), NULL
        FROM old_rows o ORDER BY o.id;
    END IF;
    -- One wake-up per transaction (identical notifications are folded); the feed is the
    -- truth, the notification only says "look".
    PERFORM pg_notify('xdhcpd_registrations', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER xdhcpd_registrations_insert AFTER INSERT ON xdhcpd_registrations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION xdhcpd_registrations_changed();
CREATE TRIGGER xdhcpd_registrations_update AFTER UPDATE ON xdhcpd_registrations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION xdhcpd_registrations_changed();
CREATE TRIGGER xdhcpd_registrations_delete AFTER DELETE ON xdhcpd_registrations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION xdhcpd_registrations_changed();

-- TRUNCATE fires no row change: refused (use DELETE, which the feed carries).
CREATE FUNCTION xdhcpd_registrations_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of xdhcpd_registrations is not carried to the servers: use DELETE';
END
$$;
CREATE TRIGGER xdhcpd_registrations_truncate BEFORE TRUNCATE ON xdhcpd_registrations
    FOR EACH STATEMENT EXECUTE FUNCTION xdhcpd_registrations_no_truncate();

-- Deletes changes older than `keep`, remembering the highest deleted sequence number (a
-- follower whose local copy is older than that loads everything again).
CREATE FUNCTION xdhcpd_prune_changes(keep interval) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7385610017);
    SELECT max(seq) INTO top FROM xdhcpd_registration_changes WHERE at < now() - keep;
    IF top IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM xdhcpd_registration_changes WHERE seq <= top;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE xdhcpd_meta SET pruned_through = greatest(pruned_through, top);
    RETURN n;
END
$$;
