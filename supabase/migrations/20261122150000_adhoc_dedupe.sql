-- An unsaved blueprint (POST /workflow/execute with a blueprint, a channel command) is stored
-- once per owner, origin and content: its runs share that workflow instead of minting one per
-- request. content_sha256 is the SHA-256 of the stored blueprint (canonical JSON), set only for
-- these origins; rows stored before this migration keep NULL and are never matched. An
-- archived copy frees its slot, so the next run stores the blueprint afresh.
alter table workflows add column content_sha256 text;
create unique index workflows_content_idx on workflows (owner_id, origin, content_sha256)
    where origin in ('adhoc', 'channel') and archived_at is null;
