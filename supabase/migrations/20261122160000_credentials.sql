-- Credentials (connections): each user's vendor secrets, encrypted by the API with Fernet
-- (CREDENTIALS_KEY) before they reach the database; a blueprint names one by `name`.
-- `secret` is the Fernet token of the credential's fields; `hint` a masked description for
-- listings (identity fields and at most the last four characters of a long secret).
create table credentials (
    id            uuid primary key default gen_random_uuid(),
    owner_id      uuid not null references users (id) on delete cascade,
    name          text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    type          text not null check (length(type) between 1 and 64),
    secret        text not null,
    hint          text not null default '',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    unique (owner_id, name)
);

-- Internal table: on Supabase, row-level security without policies (no access for the anon and
-- authenticated roles; the API reads it as the table owner). Secrets are never for a browser.
do $$
begin
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table credentials enable row level security;
    end if;
    if (select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')) then
        revoke all on table credentials from anon, authenticated;
    end if;
end;
$$;
