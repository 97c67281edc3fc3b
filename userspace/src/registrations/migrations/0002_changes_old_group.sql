-- xdhcpd registrations in PostgreSQL, schema version 2 (docs/registrations-postgres.md).
-- The change feed records the old row's group, so that a follower with
-- `[registrations.postgres] groups` can ask PostgreSQL for the changes that concern its groups
-- only: a row whose new group is one of them, or whose old group was (an update that moves a
-- registration out of them, a delete). Changes written before this migration have no old
-- group (NULL); a follower reads all of their updates and deletes.

ALTER TABLE xdhcpd_registration_changes ADD COLUMN old_group text;

CREATE OR REPLACE FUNCTION xdhcpd_registrations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7385610017);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, old_group, new)
        SELECT NULL, NULL, NULL, xdhcpd_registration_json(n.mac, n.client_id, n."group",
               n.fixed_address, n.host_name, n.next_server, n.boot_file, n.options)
        FROM new_rows n ORDER BY n.id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, old_group, new)
        SELECT o.mac::text, encode(o.client_id, 'hex'), o."group",
               xdhcpd_registration_json(n.mac, n.client_id, n."group",
               n.fixed_address, n.host_name, n.next_server, n.boot_file, n.options)
        FROM old_rows o JOIN new_rows n ON n.id = o.id ORDER BY n.id;
    ELSE
        INSERT INTO xdhcpd_registration_changes (old_mac, old_client_id, old_group, new)
        SELECT o.mac::text, encode(o.client_id, 'hex'), o."group", NULL
        FROM old_rows o ORDER BY o.id;
    END IF;
    -- One wake-up per transaction (identical notifications are folded); the feed is the
    -- truth, the notification only says "look".
    PERFORM pg_notify('xdhcpd_registrations', '');
    RETURN NULL;
END
$$;
