"""Helpers the tests (and the benchmarks) share, one module per concern.

- `home`: the project's local state kept out of the working tree;
- `database`: a Postgres server, a fresh database per session or per test, tenant rows saved;
- `fakegraph`: the bundled fake Graph started over HTTPS and tenant settings pointing at it;
- `pipeline`: a tenant's partition materialised through Dagster;
- `rows`: a small tenant staged with plain INSERTs, its snapshot read back;
- `converge`: whole syncs of a staged tenant and the app.* rows they leave;
- `cli`: the `sync-pipeline` command run as a child process;
- `smtp`: a real SMTP server collecting what the pipeline sends;
- `waiting`: waits on a condition with a deadline, never a fixed sleep.

The fixtures here are registered by the package's conftest.py; the plain functions are
imported where they are used.
"""
