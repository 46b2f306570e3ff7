"""Client authentication and token grants (Entra ID's `/oauth2/v2.0/token`): client
secret or certificate assertion, client credentials, device code and refresh token grants,
and the bearer-token check of every Graph call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets as _secrets
import time
from collections.abc import Mapping

import jwt

from sync_pipeline.fakegraph.base import _Refresh, _Token
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.permissions import _Permissions
from sync_pipeline.fakegraph.wire import (
    GraphError,
    _b64url,
    _b64url_json,
    _json_resp,
    _LoginError,
    _Resp,
)

TOKEN_LIFETIME = 3599
# The fake's own signing key for the access tokens it issues (their signature is never checked
# by a client; Graph's tokens are signed with Microsoft's keys).
_SIGNING_KEY = "sync-pipeline fake Graph access tokens"
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class _Tokens(_Permissions):
    """Who the caller is: its client credentials, its grants and its bearer token."""

    def _login_tenant(self, tid: str) -> _Tenant:
        tenant = self._tenants.get(tid)
        if tenant is None:
            raise _LoginError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tid}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud. Check with your "
                "subscription administrator, this may happen if there are no "
                "active subscriptions for the tenant.",
            )
        return tenant

    def _check_client(self, tenant: _Tenant, client_id: str) -> None:
        if client_id != tenant.client_id:
            raise _LoginError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant.name}'. This can happen if the application has "
                "not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You may have sent your "
                "authentication request to the wrong tenant.",
            )

    def _authenticate_client(
        self, tenant: _Tenant, form: Mapping[str, str], base: str, *, required: bool
    ) -> None:
        client_id = form.get("client_id", "")
        if "client_secret" in form:
            if form["client_secret"] != self._secrets.get(tenant.tenant_id):
                raise _LoginError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client "
                    "secret ID, for a secret added to app "
                    f"'{client_id}'.",
                )
            expires = self._secret_expiry.get(tenant.tenant_id)
            if expires is not None and time.time() >= expires:
                raise _LoginError(
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{client_id}' are expired. "
                    "Visit the Azure portal to create new keys for your app: "
                    "https://aka.ms/NewClientSecret, or consider using certificate "
                    "credentials for added security: https://aka.ms/certCreds.",
                )
            return
        if "client_assertion" in form:
            self._verify_assertion(tenant, form, client_id)
            return
        if required:
            raise _LoginError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )

    def _verify_assertion(self, tenant: _Tenant, form: Mapping[str, str], client_id: str) -> None:
        if form.get("client_assertion_type") != _JWT_BEARER:
            raise _LoginError(
                400, "invalid_request", 50027, f"client_assertion_type must be '{_JWT_BEARER}'."
            )
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise _LoginError(401, "invalid_client", 50027, f"Invalid JWT token. {exc}") from exc
        thumb = ""
        for name in ("x5t#S256", "x5t"):
            if name in header:
                try:
                    raw = base64.urlsafe_b64decode(header[name] + "=" * (-len(header[name]) % 4))
                except (binascii.Error, ValueError):
                    raw = b""
                thumb = raw.hex().upper()
                break
        entry = self._certs.get(tenant.tenant_id, {}).get(thumb)
        if entry is None:
            raise _LoginError(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion "
                f"is not registered on application. [Reason - The key was not "
                f"found., Thumbprint of key used by client: '{thumb}'].",
            )
        try:
            claims = jwt.decode(
                assertion,
                entry["key"],
                algorithms=["RS256", "PS256", "ES256", "RS384", "RS512"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub"]},
                leeway=300,
            )
        except jwt.ExpiredSignatureError as exc:
            raise _LoginError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise _LoginError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. {exc}",
            ) from exc
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(
            str(a).rstrip("/").endswith(f"/{tenant.tenant_id}/oauth2/v2.0/token") for a in auds
        ):
            raise _LoginError(
                401,
                "invalid_client",
                700021,
                f"Client assertion application identifier doesn't match "
                f"'client_id' parameter or audience is wrong: {aud}.",
            )
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _LoginError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )

    def _issue_access(self, tenant: _Tenant, client_id: str, user_id: str | None = None) -> str:
        # A JWT as Entra ID issues for Graph (a client reads its claims, never checks its
        # signature: the token is Graph's): the app's permissions in `roles`, an admin's
        # delegated ones in `scp`, as granted when it is issued.
        now = int(time.time())
        granted = self.granted_permissions(tenant.tenant_id)
        claims: dict[str, object] = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "appid": client_id,
            "tid": tenant.tenant_id,
            "uti": _secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if user_id is None:
            claims |= {"roles": granted, "idtyp": "app"}
        else:
            claims |= {"scp": " ".join(granted), "oid": user_id, "idtyp": "user"}
        token = jwt.encode(claims, _SIGNING_KEY, algorithm="HS256")
        self._tokens[token] = _Token(
            tenant.tenant_id, client_id, time.time() + TOKEN_LIFETIME, user_id
        )
        self._stats["tokens_issued"] += 1
        return token

    def _token(self, tid: str, form: Mapping[str, str], base: str) -> _Resp:
        tenant = self._login_tenant(tid)
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        self._check_client(tenant, client_id)
        if grant == "client_credentials":
            self._authenticate_client(tenant, form, base, required=True)
            scopes = form.get("scope", "").split()
            if not scopes or not all(s.endswith("/.default") for s in scopes):
                raise _LoginError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {form.get('scope', '')} is not "
                    "valid. Client credential flows must have a scope value with "
                    "/.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            token = self._issue_access(tenant, client_id)
            return _json_resp(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                    "ext_expires_in": TOKEN_LIFETIME,
                    "access_token": token,
                },
            )
        if grant == _DEVICE_GRANT:
            self._authenticate_client(tenant, form, base, required=False)
            code = form.get("device_code", "")
            dc = self._device_codes.get(code)
            if dc is None or dc.tenant_id != tid:
                raise _LoginError(
                    400, "invalid_grant", 70000, "Provided grant is invalid or malformed."
                )
            if time.time() > dc.expires_at:
                del self._device_codes[code]
                raise _LoginError(400, "expired_token", 70019, "Verification code expired.")
            if dc.user_id is None:
                raise _LoginError(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            del self._device_codes[code]
            return self._delegated(
                tenant, client_id, dc.user_id, form.get("scope") or dc.scope, base
            )
        if grant == "refresh_token":
            self._authenticate_client(tenant, form, base, required=False)
            rt = self._refresh.get(form.get("refresh_token", ""))
            if rt is None or rt.tenant_id != tid or rt.state == "expired":
                raise _LoginError(
                    400,
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token "
                    "was issued on 2026-01-01T00:00:00Z and was inactive for "
                    "90.00:00:00.",
                )
            if rt.state == "revoked" or rt.user_id not in tenant.users:
                raise _LoginError(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a "
                    "fresh auth token is needed. The user might have changed or "
                    "reset their password.",
                )
            return self._delegated(
                tenant, client_id, rt.user_id, form.get("scope") or rt.scope, base
            )
        raise _LoginError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _delegated(
        self, tenant: _Tenant, client_id: str, user_id: str, scope: str, base: str
    ) -> _Resp:
        user = tenant.users[user_id]
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"{base}/{tenant.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "name": user.get("displayName"),
            "oid": user_id,
            "preferred_username": user.get("userPrincipalName"),
            "sub": _b64url(hashlib.sha256(f"{user_id}:{client_id}".encode()).digest()),
            "tid": tenant.tenant_id,
            "ver": "2.0",
        }
        id_token = ".".join((_b64url_json({"typ": "JWT", "alg": "none"}), _b64url_json(claims), ""))
        refresh = _secrets.token_urlsafe(64)
        self._refresh[refresh] = _Refresh(tenant.tenant_id, client_id, user_id, scope)
        reserved = {"openid", "profile", "offline_access"}
        granted = " ".join(s for s in scope.split() if s not in reserved)
        return _json_resp(
            200,
            {
                "token_type": "Bearer",
                "scope": granted,
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": self._issue_access(tenant, client_id, user_id),
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64url_json({"uid": user_id, "utid": tenant.tenant_id}),
            },
        )

    def _authorise(self, headers: Mapping[str, str]) -> _Token:
        challenge = {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.'
            'microsoftonline.com/common/oauth2/authorize", '
            'client_id="00000003-0000-0000-c000-000000000000"'
        }
        auth = headers.get("authorization", "")
        if not auth:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        scheme, _, token = auth.partition(" ")
        record = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
                challenge,
            )
        if record.expires_at < time.time():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                challenge,
            )
        return record
