import pytest

from config.errors import ValidationFailed
from keys.ssrf import base_url_validate


@pytest.fixture(autouse=True)
def no_allowlist(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = []


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://10.1.2.3/v1", "non-public"),
        ("http://192.168.0.10:8000/v1", "non-public"),
        ("http://127.0.0.1:8001/v1", "non-public"),
        ("http://localhost:8001/v1", "non-public"),
        ("http://[::1]:8001/v1", "non-public"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://user:password@api.example.com/v1", "Credentials"),
        ("ftp://8.8.8.8/", "http"),
        ("file:///etc/passwd", "http"),
        ("https:///no-host", "http"),
        ("https://does-not-exist.invalid/v1", "does not resolve"),
    ],
)
def test_refused_upstreams(url, reason):
    with pytest.raises(ValidationFailed, match=reason) as raised:
        base_url_validate(url)
    assert raised.value.field == "base_url"


def test_public_address_is_allowed():
    assert base_url_validate("https://8.8.8.8/v1") == "https://8.8.8.8/v1"


def test_allowlist_admits_networks_and_host_names(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32", "vllm.internal"]
    assert base_url_validate("http://127.0.0.1:8001/v1")
    assert base_url_validate("http://vllm.internal:8000/v1")
    with pytest.raises(ValidationFailed):
        base_url_validate("http://10.0.0.1/v1")


def test_allowlist_never_admits_metadata_by_network_alone(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["10.0.0.0/8"]
    with pytest.raises(ValidationFailed):
        base_url_validate("http://169.254.169.254/")
