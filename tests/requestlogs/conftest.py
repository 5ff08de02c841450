from tests.proxy.conftest import gateway_url, provider, wired  # noqa: F401  (the live gateway fixtures)
