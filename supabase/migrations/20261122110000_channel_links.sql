-- Channels with identity: a WhatsApp number acts for a user only after the user linked it, by
-- sending a one-time code (made for that user and that number) from the number.

-- One number belongs to at most one user; linking it to another needs the first to unlink.
create table channel_links (
    id         uuid primary key default gen_random_uuid(),
    owner_id   uuid not null references users (id) on delete cascade,
    channel    text not null check (channel in ('whatsapp')),
    number     text not null,  -- E.164, e.g. +919876543210
    linked_at  timestamptz not null default now(),
    unique (channel, number)
);
create index channel_links_owner_idx on channel_links (owner_id, linked_at);

-- Live link codes: one per (user, number), replaced when the user asks again. Stored as the
-- SHA-256 of (id, number, code); `attempts` counts wrong codes sent from the number, and a code
-- stops working after a few of them (or when it expires, or once used: the row is deleted).
create table channel_link_codes (
    id           uuid primary key,
    owner_id     uuid not null references users (id) on delete cascade,
    channel      text not null check (channel in ('whatsapp')),
    number       text not null,
    code_sha256  text not null,
    attempts     integer not null default 0,
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    unique (owner_id, channel, number)
);
create index channel_link_codes_number_idx on channel_link_codes (channel, number);

-- Unlinked senders told how to link, so each hears it at most once per interval. Rows older
-- than the interval are deleted as new ones come in.
create table channel_hints (
    channel    text not null,
    number     text not null,
    hinted_at  timestamptz not null default now(),
    primary key (channel, number)
);
create index channel_hints_age_idx on channel_hints (hinted_at);

-- Internal tables: on Supabase, row-level security without policies (no access for the anon
-- and authenticated roles; the API reads them as the table owner).
do $$
begin
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table channel_links enable row level security;
        alter table channel_link_codes enable row level security;
        alter table channel_hints enable row level security;
    end if;
    if (select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')) then
        revoke all on table channel_links, channel_link_codes, channel_hints
            from anon, authenticated;
    end if;
end;
$$;
