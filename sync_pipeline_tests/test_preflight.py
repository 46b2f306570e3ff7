"""A failure reads in one line, with the next step: configuration errors are refused before
the run (exit 2, no Dagster lines), and a run that meets one fails at once, never retried."""

from __future__ import annotations

import socket
import time

import yaml
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.core import environment


def sync(tenant: str) -> tuple[int, list[str], float]:
    started = time.monotonic()
    result = CliRunner().invoke(main, ["sync", tenant])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines, time.monotonic() - started


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections to it are refused


def test_unset_secret_is_one_line(register, tenant_slug, monkeypatch):
    register(tenant_slug, client_secret_env="SP_TEST_UNSET_SECRET")
    monkeypatch.delenv("SP_TEST_UNSET_SECRET", raising=False)
    code, lines, _ = sync(tenant_slug)
    assert code == 2
    assert lines == [
        f"error: tenant {tenant_slug}: environment variable SP_TEST_UNSET_SECRET "
        "(client_secret_env) is not set; export the app registration's client secret value "
        "under that name"
    ]


def test_refusing_graph_host_is_retried_briefly_then_one_line(register, tenant_slug):
    url = f"https://127.0.0.1:{refused_port()}"
    register(tenant_slug, graph_base_url=url, authority_host=url)
    code, lines, seconds = sync(tenant_slug)
    assert code == 2
    assert len(lines) == 1, lines
    assert f"graph_base_url {url}" in lines[0] and "refused the connection" in lines[0]
    assert "check graph_base_url" in lines[0]
    assert 3 < seconds < 20  # a few seconds of retries, not 87


def test_unreadable_ca_and_untrusted_host_are_one_line(register, tenant_slug, tmp_path, fake_graph):
    # registered with a good CA file (settings refuse a bad one up front), which then goes
    ca = tmp_path / "missing.pem"
    ca.write_bytes(fake_graph.ca_path.read_bytes())
    register(tenant_slug, ca_bundle=str(ca))
    ca.unlink()
    code, lines, _ = sync(tenant_slug)
    assert code == 2 and len(lines) == 1 and "missing.pem' does not exist" in lines[0]
    ca.write_text("not a certificate\n")
    code, lines, _ = sync(tenant_slug)
    assert code == 2 and len(lines) == 1 and "holds no PEM certificate" in lines[0]


def test_certificate_that_does_not_load_is_one_line(register, tenant_slug, tmp_path):
    (tmp_path / "cert.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n")
    register(
        tenant_slug,
        client_secret_env=None,
        client_certificate_path=str(tmp_path / "cert.pem"),
        client_certificate_thumbprint="AB" * 20,
    )
    code, lines, _ = sync(tenant_slug)
    assert code == 2 and len(lines) == 1, lines
    assert "holds no usable private key" in lines[0]


def test_a_run_meeting_a_config_error_fails_at_once_and_promises_no_retry(
    register, tenant_slug, monkeypatch
):
    """UI and scheduled runs skip the CLI: the Graph resource's preflight fails the step with
    allow_retries=False, and the instance's run_retries (dagster.yaml) does not retry it."""
    import dagster as dg

    from sync_pipeline_tests.support.pipeline import materialise

    register(tenant_slug, client_secret_env="SP_TEST_UNSET_SECRET")
    monkeypatch.delenv("SP_TEST_UNSET_SECRET", raising=False)
    settings = yaml.safe_load(environment.INSTANCE_TEMPLATE.read_text())  # what the CLI writes
    with dg.instance_for_test(overrides={"run_retries": settings["run_retries"]}) as instance:
        result = materialise(instance, tenant_slug, raise_on_error=False)
        assert not result.success
        starts = [
            e for e in result.all_events if e.is_step_start and e.step_key == "graph_directory"
        ]
        assert len(starts) == 1  # not retried by the step's RetryPolicy
        run = instance.get_run_by_id(result.run_id)
        assert run.tags.get("dagster/will_retry") == "false"
