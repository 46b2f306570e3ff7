"""Every environment variable sync-pipeline reads, each named and documented once, here.

`.env.example` lists the same variables for a deployment to fill in. Each function reads its
variable when called, never at import: the CLI exports some of them (environment.prepare)
after the modules are imported, and tests set them per test. An empty value counts as unset
wherever unset has a meaning of its own, as before.

The variables of third-party tools that the project reads or sets (Dagster's DAGSTER_HOME,
the telemetry switches) are named here too. A tenant's client secret lives in a variable its
settings name (`client_secret_env`), so that one is read by name with `secret()`.
"""

from __future__ import annotations

import os

# -- the database and the state folder ------------------------------------------------------

DATABASE_URL = "DATABASE_URL"
"""The Postgres server for the Dagster instance and the data (staging, sync, app), e.g.
postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE. Unset: an embedded PostgreSQL under the
state folder, started on first use and reused by later commands."""

HOME = "SYNC_PIPELINE_HOME"
"""The local state folder: embedded Postgres, Dagster home, outbox, fake Graph CA. Unset: the
user's data directory (e.g. ~/.local/share/sync-pipeline), whatever the current folder."""

DAGSTER_PG_URL = "SYNC_PIPELINE_DAGSTER_PG_URL"
"""The Dagster storage's URL (psycopg2 driver). Set by the CLI for its children; unset, the
storage derives it from DATABASE_URL (or the embedded server) and exports it."""

DAGSTER_HOME = "DAGSTER_HOME"
"""Dagster's own: the folder holding dagster.yaml. Unset: the dagster folder of the state
folder, with the project's instance file kept in step; a folder the user chose keeps theirs."""

# -- secrets --------------------------------------------------------------------------------

SECRET_KEY = "SYNC_PIPELINE_SECRET_KEY"
"""The Fernet key that encrypts delegated sign-ins' token caches. No default: delegated
sign-in refuses to run without it."""

DEMO_SECRET = "SYNC_PIPELINE_DEMO_SECRET"
"""The demo tenant's client secret for the bundled fake Graph. Unset: demo-client-secret,
exported for the processes started afterwards."""

FAKEGRAPH_CLIENT_SECRET = "FAKEGRAPH_CLIENT_SECRET"
"""The secret `sync-pipeline fakegraph serve` accepts (the variable its --secret-env option
names by default). No default."""

# -- mail and alerts ------------------------------------------------------------------------

SMTP_HOST = "SMTP_HOST"
"""The SMTP server. Unset: mail is written to outbox/*.eml in the state folder."""
SMTP_PORT = "SMTP_PORT"
"""The SMTP port. Unset or empty: 587 with STARTTLS, else 25."""
SMTP_USERNAME = "SMTP_USERNAME"
"""The SMTP login. Unset or empty: no login."""
SMTP_PASSWORD = "SMTP_PASSWORD"
"""The SMTP password. Unset or empty: no login. Never logged."""
SMTP_FROM = "SMTP_FROM"
"""The sender of every message. Unset or empty: sync-pipeline@localhost."""
SMTP_STARTTLS = "SMTP_STARTTLS"
"""Whether to upgrade the connection with STARTTLS: 1/true/yes/on (any case). Default: true."""
OPS_ALERT_EMAIL = "OPS_ALERT_EMAIL"
"""Where failure alerts go. Unset or empty: no alert is mailed (the sensor logs a warning)."""
UI_URL = "SYNC_PIPELINE_UI_URL"
"""The Dagster UI's address, for links in alerts. Default: http://127.0.0.1:3000."""
REPORT_MAX_MB = "SYNC_PIPELINE_REPORT_MAX_MB"
"""The largest attachment the test sync report mails, in megabytes. Default: 10."""
OPERATOR = "SYNC_PIPELINE_OPERATOR"
"""Who takes `approve` / `reject` decisions from this shell, as recorded with each one.
Unset: the login name (`--by` overrides both)."""

# -- scheduling and scale-out ---------------------------------------------------------------

QUARANTINE_AFTER = "SYNC_PIPELINE_QUARANTINE_AFTER"
"""Consecutive failed syncs after which the schedule skips a tenant. Default: 3."""
CELERY_BROKER = "SYNC_PIPELINE_CELERY_BROKER"
"""The Celery broker (e.g. redis://127.0.0.1:6379/0): when set, steps run on Celery workers.
Unset or empty: in the run's own process."""
CELERY_BACKEND = "SYNC_PIPELINE_CELERY_BACKEND"
"""The Celery result backend. Unset: the broker."""

# -- tests ----------------------------------------------------------------------------------

TEST_PAUSE = "SYNC_PIPELINE_TEST_PAUSE"
"""A test hook: `STAGE[:SECONDS]` pauses a sync inside that stage (default 5 seconds), so a
test can stop or kill it there. Unset: no pause."""

# -- third-party switches the project sets --------------------------------------------------

DAGSTER_DISABLE_TELEMETRY = "DAGSTER_DISABLE_TELEMETRY"
"""Dagster's: set to 1 unless already set, so no usage data leaves the process."""
GX_ANALYTICS_ENABLED = "GX_ANALYTICS_ENABLED"
"""great-expectations': set to False unless already set, before GX is imported."""

VARIABLES = (
    DATABASE_URL,
    HOME,
    DAGSTER_PG_URL,
    DAGSTER_HOME,
    SECRET_KEY,
    DEMO_SECRET,
    FAKEGRAPH_CLIENT_SECRET,
    SMTP_HOST,
    SMTP_PORT,
    SMTP_USERNAME,
    SMTP_PASSWORD,
    SMTP_FROM,
    SMTP_STARTTLS,
    OPS_ALERT_EMAIL,
    UI_URL,
    REPORT_MAX_MB,
    OPERATOR,
    QUARANTINE_AFTER,
    CELERY_BROKER,
    CELERY_BACKEND,
    TEST_PAUSE,
    DAGSTER_DISABLE_TELEMETRY,
    GX_ANALYTICS_ENABLED,
)
"""Every variable above: `.env.example` lists each of them."""

DEFAULT_DEMO_SECRET = "demo-client-secret"  # not a secret: the bundled fake accepts it
DEFAULT_SENDER = "sync-pipeline@localhost"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
DEFAULT_REPORT_MAX_MB = "10"
DEFAULT_QUARANTINE_AFTER = "3"
_TRUE = {"1", "true", "yes", "on"}


# -- reading --------------------------------------------------------------------------------


def secret(name: str) -> str | None:
    """The value of the variable `name`, for variables named by settings or options (a
    tenant's client_secret_env, the fake's --secret-env); None when unset."""
    return os.environ.get(name)


def database_url() -> str | None:
    """DATABASE_URL; None or empty when unset (then the embedded server is used)."""
    return os.environ.get(DATABASE_URL)


def home() -> str | None:
    """SYNC_PIPELINE_HOME as set, or None."""
    return os.environ.get(HOME)


def dagster_pg_url() -> str | None:
    """SYNC_PIPELINE_DAGSTER_PG_URL as set, or None."""
    return os.environ.get(DAGSTER_PG_URL)


def dagster_home() -> str | None:
    """DAGSTER_HOME as the user set it, or None."""
    return os.environ.get(DAGSTER_HOME)


def prepared_dagster_home() -> str:
    """DAGSTER_HOME once environment.prepare() has set it (KeyError before)."""
    return os.environ[DAGSTER_HOME]


def secret_key() -> str | None:
    """SYNC_PIPELINE_SECRET_KEY as set, or None."""
    return os.environ.get(SECRET_KEY)


def smtp_host() -> str | None:
    return os.environ.get(SMTP_HOST)


def smtp_port() -> str | None:
    """SMTP_PORT as text (the mail module says when it is not a number), or None."""
    return os.environ.get(SMTP_PORT)


def smtp_username() -> str | None:
    return os.environ.get(SMTP_USERNAME) or None


def smtp_password() -> str | None:
    return os.environ.get(SMTP_PASSWORD) or None


def smtp_sender() -> str:
    return os.environ.get(SMTP_FROM) or DEFAULT_SENDER


def smtp_starttls() -> bool:
    return os.environ.get(SMTP_STARTTLS, "true").strip().lower() in _TRUE


def ops_alert_email() -> str | None:
    return os.environ.get(OPS_ALERT_EMAIL)


def operator() -> str | None:
    return os.environ.get(OPERATOR) or None


def ui_url() -> str:
    """The UI's base address, without a trailing slash."""
    return os.environ.get(UI_URL, DEFAULT_UI_URL).rstrip("/")


def report_max_mb() -> str:
    """SYNC_PIPELINE_REPORT_MAX_MB as text: the report says when it is not a positive number."""
    return os.environ.get(REPORT_MAX_MB, DEFAULT_REPORT_MAX_MB)


def quarantine_after() -> int:
    return int(os.environ.get(QUARANTINE_AFTER, DEFAULT_QUARANTINE_AFTER))


def celery_broker() -> str | None:
    return os.environ.get(CELERY_BROKER)


def celery_backend(broker: str) -> str:
    """The result backend: SYNC_PIPELINE_CELERY_BACKEND, else `broker`."""
    return os.environ.get(CELERY_BACKEND, broker)


def test_pause() -> str:
    """SYNC_PIPELINE_TEST_PAUSE as set, or empty."""
    return os.environ.get(TEST_PAUSE, "")


# -- writing, for this process and the ones it starts ---------------------------------------


def export(name: str, value: str) -> str:
    """Set `name` for this process and its children (run workers, the UI); returns `value`."""
    os.environ[name] = value
    return value


def export_default(name: str, value: str) -> str:
    """Set `name` to `value` unless it is already set; returns the value in effect."""
    return os.environ.setdefault(name, value)
