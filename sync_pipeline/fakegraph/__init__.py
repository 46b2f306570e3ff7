"""The bundled fake Microsoft Graph: tenant generator and a local HTTPS Graph + token server.

Ground floor: no Dagster imports. What it answers, and the documented behaviour it follows, is
in docs/graph.md.
"""

from sync_pipeline.fakegraph.generator import generate_tenant
from sync_pipeline.fakegraph.server import FakeGraph, serve_forever
from sync_pipeline.fakegraph.tenantfile import bundled_tenant, load_tenant_file

__all__ = ["FakeGraph", "bundled_tenant", "generate_tenant", "load_tenant_file", "serve_forever"]
