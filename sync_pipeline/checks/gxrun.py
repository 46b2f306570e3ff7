"""great-expectations, run quietly in this process: one ephemeral context (no `gx/` folder,
nothing stored, progress bars and analytics off), each suite's validation built once, and
its results turned into an `Outcome`."""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
import time
import types
from typing import TYPE_CHECKING, Any

import pandas as pd

from sync_pipeline.checks.outcome import ERROR, WARN, Failure, Outcome
from sync_pipeline.checks.suites import ADVISORY_SUITES, SAMPLE_COLUMNS, suite_expectations
from sync_pipeline.core import config

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.datasource.fluent import PandasDatasource

# No usage statistics leave the process; must be set before GX is imported.
config.export_default(config.GX_ANALYTICS_ENABLED, "False")

SAMPLE_ROWS = 5
DATASOURCE = "sync_pipeline"

# GX objects are built once per process, by whichever thread gets there first (a check, or
# warm_up's thread): a second builder would add the same suites twice.
_BUILD = threading.RLock()
_VALIDATE = threading.Lock()


def context() -> gx.data_context.AbstractDataContext:
    with _BUILD:
        return new_context()


def warm_up() -> threading.Thread:
    """Import GX and build its context and every suite in a background thread, so that a
    run pays the import (~2 s) while its extraction waits on Graph instead of in its first
    check. A check arriving earlier waits for the thread (never builds twice)."""

    # What GX imports that this process's other threads use as well is imported first, here
    # in the caller's thread (~50 ms): a module another thread is still importing can be
    # reached half-initialised through a registry, as SQLAlchemy's inspection hooks were
    # (`sqlalchemy.orm.exc has no attribute UnmappedClassError`) when the whole import ran in
    # the background. What is left for the thread (scipy, GX, altair...) only GX uses.
    import sqlalchemy.dialects.postgresql.psycopg
    import sqlalchemy.dialects.postgresql.psycopg2
    import sqlalchemy.orm  # noqa: F401

    def build() -> None:
        for name in SAMPLE_COLUMNS:
            validation(name, True)
            if name in ADVISORY_SUITES:
                validation(name, False)

    thread = threading.Thread(target=build, name="gx-warm-up", daemon=True)
    thread.start()
    return thread


# Modules GX imports at its own import for expectations these suites never use (the KL
# divergence and KS tests, and their charts): ~1.4 s of a run's ~2.7 s GX import, on the
# CPU the run needs. They are deferred, imported for real on the first use of an attribute.
DEFERRED_MODULES = ("scipy.stats", "altair")
_DEFER = threading.Lock()


class _Deferred(types.ModuleType):
    """A module that imports itself on the first use of one of its attributes."""

    def __getattr__(self, attr: str) -> Any:
        with _DEFER:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            self.__dict__.update(real.__dict__)  # later lookups find it without a call
        return getattr(real, attr)


def defer_unused_imports() -> None:
    """Put DEFERRED_MODULES in sys.modules as _Deferred, unless already imported."""
    for name in DEFERRED_MODULES:
        if name not in sys.modules:
            sys.modules[name] = _Deferred(name)


@functools.cache
def new_context() -> gx.data_context.AbstractDataContext:
    # Imported here, not at module top: GX takes seconds to import, and loading the Dagster
    # definitions (UI, every run's start) should not pay for it before a check runs.
    defer_unused_imports()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every dataframe batch it is given (an md5 over pandas' hash of every
    # cell, ~70 ms per 100k-row frame) unless the frame is larger than this many bytes. The
    # fingerprint only labels the batch in stored results, and this context stores none, so
    # the threshold is 0: nothing is hashed.
    pandas_execution_engine.HASH_THRESHOLD = 0
    # GX logs its set-up at INFO (docs decorators, datasource loading): not for run logs.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    config = DataContextConfig(
        # every store in memory and no data-docs site: nothing written anywhere
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    gx_context = gx.get_context(mode="ephemeral", project_config=config)
    gx_context.data_sources.add_pandas(DATASOURCE)
    return gx_context


def _source(gx_context: gx.data_context.AbstractDataContext) -> PandasDatasource:
    """The pandas datasource new_context added (data_sources.get names only the base type)."""
    from great_expectations.datasource.fluent import PandasDatasource

    source = gx_context.data_sources.get(DATASOURCE)
    if not isinstance(source, PandasDatasource):
        raise TypeError(f"GX datasource {DATASOURCE!r} is a {type(source).__name__}")
    return source


def validation(name: str, strict: bool = True) -> gx.ValidationDefinition:
    """The suite's ValidationDefinition, built once per process (a whole-dataframe batch)."""
    with _BUILD:
        return new_validation(name, strict)


@functools.cache
def new_validation(name: str, strict: bool) -> gx.ValidationDefinition:
    defer_unused_imports()
    import great_expectations as gx

    gx_context = context()
    key = f"{name}{'' if strict else '_advisory'}"
    asset = _source(gx_context).add_dataframe_asset(key)
    batch = asset.add_batch_definition_whole_dataframe(key)
    suite = gx_context.suites.add(
        gx.ExpectationSuite(name=key, expectations=suite_expectations(name, strict))
    )
    return gx_context.validation_definitions.add(
        gx.ValidationDefinition(name=key, data=batch, suite=suite)
    )


def validate(
    name: str,
    frame: pd.DataFrame,
    parameters: dict[str, Any] | None = None,
    *,
    strict: bool = True,
) -> Outcome:
    """Run suite `name` on `frame`; `strict=False` turns its guards into warnings.

    One validation at a time per process (GX does not say its context is thread-safe); the
    checks' loads around it may run concurrently."""
    definition = validation(name, strict)
    with _VALIDATE:
        started = time.monotonic()
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters or {},
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": SAMPLE_ROWS,
                "unexpected_index_column_names": SAMPLE_COLUMNS[name],
            },
        )
    failures = [_failure(r) for r in result.results if not r.success]
    return Outcome(
        suite=name,
        rows=len(frame),
        evaluated=len(result.results),
        failures=failures,
        seconds=round(time.monotonic() - started, 3),
    )


def _failure(r: ExpectationValidationResult) -> Failure:
    config = r.expectation_config
    if config is None:  # a result of validation.run always names its expectation
        raise ValueError("GX returned a result without its expectation")
    kwargs = config.kwargs
    target = kwargs.get("column") or ""
    res = r.result or {}
    sample = tuple(
        {k: _plain(v) for k, v in row.items()}
        for row in (res.get("partial_unexpected_index_list") or [])[:SAMPLE_ROWS]
    )
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed: Any = r.exception_info.get("exception_message")
    else:
        observed = _plain(res.get("observed_value"))
    return Failure(
        expectation=f"{config.type}({target})" if target else config.type,
        description=config.description or "",
        severity=ERROR if str(config.severity.value) == "critical" else WARN,
        unexpected_count=res.get("unexpected_count"),
        observed=observed,
        sample=sample,
    )


def _plain(value: Any) -> Any:
    """JSON-able scalars for Dagster metadata (numpy and pandas values included)."""
    if value is None or isinstance(value, str | bool | int | float):
        return None if isinstance(value, float) and value != value else value
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)
