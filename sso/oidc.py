"""The OpenID Connect relying party: discovery, the authorization request (code flow with PKCE),
the code exchange and the validation of ID tokens.

An ID token is accepted only when its signature verifies under a key from the provider's JWKS
(asymmetric algorithms only, never `none` or a shared secret), its `iss` is the configured issuer,
its `aud` holds our client id (and `azp` is ours when there are several audiences), it has not
expired and was not issued in the future (beyond GATEHOUSE_OIDC_CLOCK_SKEW_SECONDS), and its
`nonce` is the one this browser's login started with.
"""
import base64
import dataclasses
import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode, urlsplit

import jwt
import requests
from django.conf import settings
from django.core.cache import cache

from config.errors import ValidationFailed
from keys.ssrf import base_url_validate

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_CACHE_SECONDS = 3600
JWKS_CACHE_SECONDS = 3600
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_SCOPES = "openid email profile"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class OidcError(Exception):
    """The provider or its token failed a check. `reason` is a stable code for the audit event."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]


def issuer_validate(issuer: str) -> str:
    """An issuer is an https URL (http only on this machine, for development) that Gatehouse may call."""
    issuer = issuer.strip()  # kept exactly: the token's `iss` must equal it, trailing slash and all
    parts = urlsplit(issuer)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise ValidationFailed("The issuer must be an https:// URL.", field="issuer")
    if parts.query or parts.fragment:
        raise ValidationFailed("The issuer has no query or fragment.", field="issuer")
    return base_url_validate(issuer, field="issuer")


def _get_json(url: str, *, what: str) -> dict:
    try:
        base_url_validate(url, field=what)
    except ValidationFailed as exc:
        raise OidcError("provider_unreachable", f"The identity provider's {what} is not allowed: {exc.message}") from None
    try:
        response = requests.get(url, timeout=settings.GATEHOUSE_OIDC_HTTP_TIMEOUT_SECONDS, allow_redirects=False)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise OidcError("provider_unreachable", f"The identity provider's {what} could not be read ({exc.__class__.__name__}).") from None


def _cache_key(kind: str, url: str) -> str:
    return f"sso:{kind}:{hashlib.sha256(url.encode()).hexdigest()}"


def provider_metadata_get(*, issuer: str) -> ProviderMetadata:
    """The provider's discovery document (cached); its `issuer` must be exactly the configured one."""
    key = _cache_key("discovery", issuer)
    document = cache.get(key)
    if document is None:
        document = _get_json(issuer.rstrip("/") + DISCOVERY_PATH, what="discovery document")
        if document.get("issuer") != issuer:
            raise OidcError("issuer_mismatch", "The identity provider's discovery document names another issuer.")
        cache.set(key, document, DISCOVERY_CACHE_SECONDS)
    try:
        algorithms = tuple(
            alg for alg in document.get("id_token_signing_alg_values_supported", ["RS256"]) if alg in ASYMMETRIC_ALGORITHMS
        )
        return ProviderMetadata(
            issuer=document["issuer"], authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"], jwks_uri=document["jwks_uri"], signing_algorithms=algorithms,
        )
    except KeyError as exc:
        raise OidcError("provider_misconfigured", f"The identity provider's discovery document lacks {exc}.") from None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = _b64url(secrets.token_bytes(32))
    return verifier, _b64url(hashlib.sha256(verifier.encode()).digest())


def authorization_url_build(
    *, metadata: ProviderMetadata, client_id: str, redirect_uri: str, state: str, nonce: str, code_challenge: str,
    scopes: str = DEFAULT_SCOPES, login_hint: str = "",
) -> str:
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
        "state": state, "nonce": nonce, "code_challenge": code_challenge, "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return metadata.authorization_endpoint + separator + urlencode(params)


def code_exchange(
    *, metadata: ProviderMetadata, client_id: str, client_secret: str, code: str, redirect_uri: str, code_verifier: str
) -> dict:
    """The token response for an authorization code (client_secret_basic, with the PKCE verifier)."""
    try:
        base_url_validate(metadata.token_endpoint, field="token_endpoint")
    except ValidationFailed as exc:
        raise OidcError("provider_unreachable", f"The identity provider's token endpoint is not allowed: {exc.message}") from None
    # RFC 6749 2.3.1: the client id and secret are form-encoded before they go into Basic.
    basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()).decode()
    try:
        response = requests.post(
            metadata.token_endpoint,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier},
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            timeout=settings.GATEHOUSE_OIDC_HTTP_TIMEOUT_SECONDS, allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise OidcError("provider_unreachable", f"The identity provider could not be reached ({exc.__class__.__name__}).") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        error = str(body.get("error", response.status_code))[:100]
        raise OidcError("code_rejected", f"The identity provider refused the sign-in ({error}).")
    if "id_token" not in body:
        raise OidcError("no_id_token", "The identity provider answered without an ID token.")
    return body


def _jwks_get(*, jwks_uri: str, refresh: bool = False) -> dict:
    key = _cache_key("jwks", jwks_uri)
    jwks = None if refresh else cache.get(key)
    if jwks is None:
        jwks = _get_json(jwks_uri, what="key set")
        cache.set(key, jwks, JWKS_CACHE_SECONDS)
    return jwks


def _signing_key(*, metadata: ProviderMetadata, header: dict):
    kid = header.get("kid")
    for refresh in (False, True):  # an unknown key id may be a rotation: read the key set again once
        try:
            key_set = jwt.PyJWKSet.from_dict(_jwks_get(jwks_uri=metadata.jwks_uri, refresh=refresh))
        except jwt.PyJWTError:
            raise OidcError("provider_misconfigured", "The identity provider's key set is not valid.") from None
        candidates = [key for key in key_set.keys if kid is None or key.key_id == kid]
        if candidates:
            return candidates[0]
    raise OidcError("unknown_key", "The ID token is signed with a key the identity provider does not publish.")


def id_token_validate(*, id_token: str, metadata: ProviderMetadata, issuer: str, client_id: str, nonce: str) -> dict:
    """The claims of a valid ID token; raises OidcError naming the first check that failed."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise OidcError("malformed_token", "The ID token is not a signed JWT.") from None
    algorithm = header.get("alg")
    if algorithm not in metadata.signing_algorithms:
        raise OidcError("algorithm_refused", f"The ID token's algorithm {algorithm!r} is not accepted.")
    key = _signing_key(metadata=metadata, header=header)
    try:
        claims = jwt.decode(
            id_token, key=key, algorithms=[algorithm], audience=client_id, issuer=issuer,
            leeway=settings.GATEHOUSE_OIDC_CLOCK_SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "verify_iat": True},
        )
    except jwt.InvalidSignatureError:
        raise OidcError("bad_signature", "The ID token's signature does not verify: it was altered or forged.") from None
    except jwt.ExpiredSignatureError:
        raise OidcError("expired", "The ID token has expired. Sign in again.") from None
    except jwt.InvalidIssuerError:
        raise OidcError("wrong_issuer", "The ID token comes from another issuer than this org's identity provider.") from None
    except jwt.InvalidAudienceError:
        raise OidcError("wrong_audience", "The ID token was issued for another application.") from None
    except jwt.ImmatureSignatureError:
        raise OidcError("not_yet_valid", "The ID token is not valid yet; check the clocks.") from None
    except jwt.PyJWTError as exc:
        raise OidcError("invalid_token", f"The ID token is not valid ({exc.__class__.__name__}).") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("wrong_audience", "The ID token was issued for another application.")
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("nonce_mismatch", "The ID token does not belong to the sign-in this browser started.")
    return claims
