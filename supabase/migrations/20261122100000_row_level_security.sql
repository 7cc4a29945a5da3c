-- Supabase: row-level security on every table, so the project's anon key and a signed-in user's
-- token reach only what a dashboard may read -- and only their own rows of it.
--
-- Supabase grants `anon` and `authenticated` every privilege on every table in `public` and relies
-- on row-level security to narrow them; a table without RLS is readable and writable by anyone
-- holding the anon key (as `session_messages` was, and published to Realtime besides).
--
--   dashboard tables  the owner may SELECT their rows (`owner_id = auth.uid()`); nothing else.
--                     Writes go through the API, which validates blueprints, keeps versions
--                     immutable, fences run writes on leases and records who did what: a direct
--                     write would bypass all of it, so `authenticated` keeps only SELECT.
--   users             a user may SELECT their own profile row (edits go through PATCH /me).
--   internal tables   no policy and no privilege: checkpoints, attempts, waits, events,
--                     schedules, webhook deliveries, API key hashes are the engine's business.
--
-- RLS is enabled on every table, not only where a policy exists: with RLS and no policy, a role
-- that is not the table's owner sees no rows. Privileges are revoked as well, because TRUNCATE,
-- REFERENCES and TRIGGER are not subject to RLS, nor are the identity sequences behind
-- `bigint generated always as identity` columns.
--
-- The backend is unaffected: it connects as the tables' owner (`postgres`, which ran these
-- migrations) or a BYPASSRLS role (`service_role`), and RLS does not apply to either; it is not
-- FORCEd. Every statement is guarded, so on plain PostgreSQL (no `auth.uid()`, no Supabase roles)
-- this file changes nothing. A table added by a later migration must do the same for itself:
-- tests/test_migrations.py checks every table of the schema.
do $$
declare
    dashboard constant text[] := array[
        'workflows', 'workflow_versions', 'workflow_runs', 'workflow_logs',
        'sessions', 'session_messages'
    ];
    internal constant text[] := array[
        'step_checkpoints', 'step_attempts', 'run_waits', 'events', 'workflow_schedules',
        'webhook_deliveries', 'api_keys'
    ];
    everything constant text[] := dashboard || internal || array['users'];
    supabase_roles constant boolean := (
        select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')
    );
    tbl text;
    seq text;
begin
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        return;
    end if;

    foreach tbl in array everything loop
        execute format('alter table %I enable row level security', tbl);
    end loop;

    if not supabase_roles then
        return;
    end if;

    -- `(select auth.uid())` is evaluated once per statement, not once per row.
    foreach tbl in array dashboard loop
        execute format(
            'create policy %I on %I for select to authenticated'
            ' using (owner_id = (select auth.uid()))', tbl || '_owner_select', tbl);
    end loop;
    create policy users_self_select on users for select to authenticated
        using (id = (select auth.uid()));

    foreach tbl in array everything loop
        execute format('revoke all on table %I from anon, authenticated', tbl);
        for seq in
            select pg_get_serial_sequence(format('%I', tbl), a.attname)
            from pg_attribute a
            where a.attrelid = tbl::regclass and a.attidentity <> '' and not a.attisdropped
        loop
            execute format('revoke all on sequence %s from anon, authenticated', seq);
        end loop;
    end loop;
    foreach tbl in array dashboard || array['users'] loop
        execute format('grant select on table %I to authenticated', tbl);
    end loop;

    -- The migrations' bookkeeping (written by `wf migrate` and the Supabase CLI) is not theirs.
    if exists (select 1 from pg_namespace where nspname = 'supabase_migrations') then
        revoke all on schema supabase_migrations from anon, authenticated;
        revoke all on all tables in schema supabase_migrations from anon, authenticated;
    end if;
end;
$$;
