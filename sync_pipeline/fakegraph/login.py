"""The login endpoints msal talks to: the OpenID configuration of a tenant's authority,
the token endpoint (grants in `tokens.py`), device codes, and errors in Entra ID's shape
(`AADSTS...`)."""

from __future__ import annotations

import datetime as dt
import secrets as _secrets
import string
import time
import urllib.parse
import uuid
from collections.abc import Mapping

from sync_pipeline.fakegraph.base import _DeviceCode
from sync_pipeline.fakegraph.tokens import _Tokens
from sync_pipeline.fakegraph.wire import _json_resp, _LoginError, _Resp


class _Login(_Tokens):
    """`/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/oauth2/v2.0/...`."""

    def _login(
        self,
        method: str,
        path: str,
        body: bytes,
        base: str,
        headers: Mapping[str, str],
        request_id: str,
    ) -> _Resp:
        parts = [p for p in path.split("/") if p]
        tid = parts[0] if parts else ""
        rest = "/".join(parts[1:])
        try:
            if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
                self._login_tenant(tid)
                return _json_resp(200, self._openid_config(base, tid))
            if method == "POST" and rest == "oauth2/v2.0/token":
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                return self._token(tid, form, base)
            if method == "POST" and rest == "oauth2/v2.0/devicecode":
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                return self._devicecode(tid, form)
        except _LoginError as exc:
            return self._login_error(exc, base, request_id)
        return _json_resp(
            404, {"error": "not_found", "error_description": f"no endpoint {method} {path}"}
        )

    def _login_error(self, exc: _LoginError, base: str, request_id: str) -> _Resp:
        now = dt.datetime.now(dt.UTC)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return _json_resp(
            exc.status,
            {
                "error": exc.error,
                "error_description": f"AADSTS{exc.aadsts}: {exc.description} Trace ID: {trace} "
                f"Correlation ID: {corr} Timestamp: {stamp}",
                "error_codes": [exc.aadsts],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": f"{base}/error?code={exc.aadsts}",
            },
            headers={"x-ms-request-id": request_id},
        )

    @staticmethod
    def _openid_config(base: str, tid: str) -> dict:
        root = f"{base}/{tid}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "oid",
            ],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _devicecode(self, tid: str, form: Mapping[str, str]) -> _Resp:
        tenant = self._login_tenant(tid)
        self._check_client(tenant, form.get("client_id", ""))
        device_code = _secrets.token_urlsafe(48)
        user_code = "".join(_secrets.choice(string.ascii_uppercase) for _ in range(9))
        expires_in = 900
        self._device_codes[device_code] = _DeviceCode(
            tid, tenant.client_id, form.get("scope", ""), user_code, time.time() + expires_in
        )
        uri = "https://microsoft.com/devicelogin"
        return _json_resp(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": expires_in,
                "interval": self.device_code_interval,
                "message": f"To sign in, use a web browser to open the page {uri} and enter "
                f"the code {user_code} to authenticate.",
            },
        )
