"""ID token validation against real tokens from the test OpenID provider."""
import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from config.errors import ValidationFailed
from sso import oidc

REDIRECT_URI = "http://testserver/rp/callback/"


@pytest.fixture(autouse=True)
def provider_allowed(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]


def real_id_token(oidc_provider, *, client: dict, issuer: str, nonce: str = "the-nonce") -> tuple[str, oidc.ProviderMetadata]:
    """Signs in at the provider as a relying party would and returns the ID token it issued."""
    metadata = oidc.provider_metadata_get(issuer=issuer)
    verifier, challenge = oidc.pkce_pair()
    url = oidc.authorization_url_build(
        metadata=metadata, client_id=client["client_id"], redirect_uri=REDIRECT_URI, state="state", nonce=nonce,
        code_challenge=challenge,
    )
    back = oidc_provider.sign_in(url, email="rp@example.org", back_to=REDIRECT_URI)
    code = parse_qs(urlsplit(back).query)["code"][0]
    tokens = oidc.code_exchange(
        metadata=metadata, client_id=client["client_id"], client_secret=client["client_secret"], code=code,
        redirect_uri=REDIRECT_URI, code_verifier=verifier,
    )
    return tokens["id_token"], metadata


@pytest.fixture(scope="module")
def client_a(oidc_provider):
    return oidc_provider.client_register(redirect_uris=[REDIRECT_URI], name="client-a")


def validate(id_token, metadata, *, issuer, client_id, nonce="the-nonce"):
    return oidc.id_token_validate(id_token=id_token, metadata=metadata, issuer=issuer, client_id=client_id, nonce=nonce)


def reason_of(call) -> str:
    with pytest.raises(oidc.OidcError) as raised:
        call()
    return raised.value.reason


def test_a_valid_token_yields_its_claims(oidc_provider, client_a):
    token, metadata = real_id_token(oidc_provider, client=client_a, issuer=oidc_provider.issuer)
    claims = validate(token, metadata, issuer=oidc_provider.issuer, client_id=client_a["client_id"])
    assert claims["email"] == "rp@example.org" and claims["nonce"] == "the-nonce" and claims["sub"] == "acct:rp@example.org"


def test_wrong_audience_wrong_nonce_and_tampering_are_refused(oidc_provider, client_a):
    token, metadata = real_id_token(oidc_provider, client=client_a, issuer=oidc_provider.issuer)
    other_client = oidc_provider.client_register(redirect_uris=[REDIRECT_URI], name="client-b")
    issuer = oidc_provider.issuer
    assert reason_of(lambda: validate(token, metadata, issuer=issuer, client_id=other_client["client_id"])) == "wrong_audience"
    assert reason_of(lambda: validate(token, metadata, issuer=issuer, client_id=client_a["client_id"], nonce="forged")) == "nonce_mismatch"
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "ceo@example.org"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    assert reason_of(lambda: validate(tampered, metadata, issuer=issuer, client_id=client_a["client_id"])) == "bad_signature"
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert reason_of(lambda: validate(unsigned, metadata, issuer=issuer, client_id=client_a["client_id"])) == "algorithm_refused"


def test_a_token_of_another_issuer_is_refused_even_under_the_same_key(oidc_provider):
    """The second issuer of the test provider signs with the same key, so only the `iss` check can refuse it."""
    other_client = oidc_provider.client_register(redirect_uris=[REDIRECT_URI], issuer=oidc_provider.other_issuer)
    token, _ = real_id_token(oidc_provider, client=other_client, issuer=oidc_provider.other_issuer)
    metadata = oidc.provider_metadata_get(issuer=oidc_provider.issuer)
    assert jwt.get_unverified_header(token)["kid"] == "gatehouse-test-1"
    reason = reason_of(lambda: validate(token, metadata, issuer=oidc_provider.issuer, client_id=other_client["client_id"]))
    assert reason == "wrong_issuer"


def test_an_expired_token_is_refused(oidc_provider, settings):
    settings.GATEHOUSE_OIDC_CLOCK_SKEW_SECONDS = 0
    short_lived = oidc_provider.client_register(redirect_uris=[REDIRECT_URI], name="short-lived")
    token, metadata = real_id_token(oidc_provider, client=short_lived, issuer=oidc_provider.issuer)
    time.sleep(1.2)
    reason = reason_of(lambda: validate(token, metadata, issuer=oidc_provider.issuer, client_id=short_lived["client_id"]))
    assert reason == "expired"


def test_discovery_must_name_the_configured_issuer(oidc_provider):
    assert reason_of(lambda: oidc.provider_metadata_get(issuer=oidc_provider.issuer + "/")) == "issuer_mismatch"


@pytest.mark.parametrize(
    "issuer, message",
    [
        ("http://idp.example.com", "must be an https:// URL"),
        ("https://169.254.169.254", "non-public address"),
        ("https://idp.example.com/?tenant=x", "no query"),
    ],
)
def test_an_issuer_must_be_https_and_public(issuer, message):
    with pytest.raises(ValidationFailed, match=message):
        oidc.issuer_validate(issuer)
