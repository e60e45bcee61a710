-- Promotions as managed data (docs/promotions.md, specs/promotions.md): every change is a new revision;
-- a promotion runs its approved (live) revision while an edit waits as a draft revision for approval.
-- Its status is the life cycle of what runs: draft and pending_approval before the first approval, then
-- active (shown as scheduled before its starts_at and ended after its ends_at: time needs no writer),
-- paused, ended (by hand), archived (hidden).
CREATE TABLE promotions (
    id             text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    status         text NOT NULL CHECK (status IN
                       ('draft', 'pending_approval', 'active', 'paused', 'ended', 'archived')),
    live_revision  integer,   -- the approved revision that prices carts (NULL until the first approval)
    draft_revision integer,   -- an edit not approved yet (NULL when there is none)
    created_at     timestamptz NOT NULL,
    created_by     text NOT NULL,
    updated_at     timestamptz NOT NULL,
    CHECK (live_revision IS NOT NULL OR status IN ('draft', 'pending_approval', 'archived'))
);
CREATE INDEX promotions_status ON promotions (status, updated_at DESC);

CREATE TABLE promotion_revisions (
    promotion_id text NOT NULL REFERENCES promotions (id),
    revision     integer NOT NULL CHECK (revision >= 1),
    body         jsonb NOT NULL,          -- the promotion object, as the admin API validated it
    starts_at    timestamptz,             -- copied out of body.when: lists filter on them
    ends_at      timestamptz,
    author       text NOT NULL,           -- 'staff:<id>' or 'api_key:<id>'
    created_at   timestamptz NOT NULL,
    state        text NOT NULL CHECK (state IN ('draft', 'pending_approval', 'approved', 'rejected', 'superseded')),
    decided_by   text,
    decided_at   timestamptz,
    reason       text,
    PRIMARY KEY (promotion_id, revision)
);

-- Arbitration groups. 'default' (exclusive, priority 100) exists in code whether or not a row says so;
-- a row overrides it.
CREATE TABLE promotion_groups (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    mode            text NOT NULL CHECK (mode IN ('sequential', 'exclusive', 'sum', 'best')),
    priority        integer NOT NULL,
    max_discount_bp integer CHECK (max_discount_bp BETWEEN 0 AND 10000),
    updated_at      timestamptz NOT NULL
);

-- Personal offers: a promotion with audience.personal reaches only the customers holding one.
CREATE TABLE promotion_offers (
    customer_id  uuid NOT NULL REFERENCES customers (id),
    promotion_id text NOT NULL REFERENCES promotions (id),
    valid_until  timestamptz NOT NULL,
    granted_by   text NOT NULL,
    granted_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, promotion_id)
);

-- Who changed what, when: every change of a promotion or a group, approvals and rejections included.
CREATE TABLE promotion_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    promotion_id text REFERENCES promotions (id),
    group_id     text,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    revision     integer,
    old_status   text,
    new_status   text,
    changes      jsonb NOT NULL DEFAULT '[]',  -- [{"field": "when.ends_at", "old": …, "new": …}]
    reason       text,
    CHECK (promotion_id IS NOT NULL OR group_id IS NOT NULL)
);
CREATE INDEX promotion_audit_promotion ON promotion_audit (promotion_id, id) WHERE promotion_id IS NOT NULL;

-- One counter that every change of what prices carts moves, in the change's transaction (beside a
-- NOTIFY): API processes compare it to their snapshot's as the fallback when LISTEN is away.
-- The values come from a sequence, so the version never repeats (not even after the row is deleted).
CREATE TABLE promotion_catalog (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
CREATE SEQUENCE promotion_catalog_versions;
