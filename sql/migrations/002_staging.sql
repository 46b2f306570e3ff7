-- Raw Graph objects of the latest extraction, one table per entity, keyed by (tenant, graph id...).
CREATE TABLE IF NOT EXISTS staging.users (
    tenant                   text NOT NULL,
    id                       text NOT NULL,
    user_principal_name      text,
    mail                     text,
    other_mails              jsonb NOT NULL DEFAULT '[]',
    proxy_addresses          jsonb NOT NULL DEFAULT '[]',
    display_name             text,
    given_name               text,
    surname                  text,
    job_title                text,
    department               text,
    office_location          text,
    company_name             text,
    employee_id              text,
    account_enabled          boolean,
    user_type                text,
    assigned_licenses        jsonb NOT NULL DEFAULT '[]',
    created_date_time        timestamptz,
    on_premises_sync_enabled boolean,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE IF NOT EXISTS staging.groups (
    tenant            text NOT NULL,
    id                text NOT NULL,
    display_name      text,
    description       text,
    group_types       jsonb NOT NULL DEFAULT '[]',
    mail_enabled      boolean,
    security_enabled  boolean,
    mail              text,
    created_date_time timestamptz,
    PRIMARY KEY (tenant, id)
);

-- Direct members only; member_type is the @odata.type without its prefix
-- (user, group, orgContact, device, servicePrincipal, ...).
CREATE TABLE IF NOT EXISTS staging.group_members (
    tenant      text NOT NULL,
    group_id    text NOT NULL,
    member_id   text NOT NULL,
    member_type text NOT NULL,
    PRIMARY KEY (tenant, group_id, member_id)
);
CREATE INDEX IF NOT EXISTS group_members_member ON staging.group_members (tenant, member_id);

CREATE TABLE IF NOT EXISTS staging.subscribed_skus (
    tenant            text NOT NULL,
    sku_id            text NOT NULL,
    sku_part_number   text,
    capability_status text,
    consumed_units    integer,
    enabled_units     integer,
    PRIMARY KEY (tenant, sku_id)
);

CREATE TABLE IF NOT EXISTS staging.user_licences (
    tenant         text NOT NULL,
    user_id        text NOT NULL,
    sku_id         text NOT NULL,
    disabled_plans jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant, user_id, sku_id)
);

CREATE TABLE IF NOT EXISTS staging.user_managers (
    tenant     text NOT NULL,
    user_id    text NOT NULL,
    manager_id text NOT NULL,
    PRIMARY KEY (tenant, user_id)
);

-- What each extraction read, so later stages can prove they work on a complete read.
CREATE TABLE IF NOT EXISTS staging.extractions (
    tenant       text NOT NULL,
    entity       text NOT NULL,
    rows         bigint NOT NULL,
    requests     integer NOT NULL,
    extracted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, entity)
);
