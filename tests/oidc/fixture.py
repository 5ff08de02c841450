"""Runs the real OpenID provider of tests/oidc/provider.js (the `oidc-provider` npm package) on 127.0.0.1
and drives its login page like a browser would, for the SSO tests."""
import os
import pathlib
import shutil
import socket
import subprocess
import time
from urllib.parse import urljoin, urlsplit

import requests

PROVIDER_DIR = pathlib.Path(__file__).resolve().parent
START_TIMEOUT_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_modules_install() -> None:
    """`npm ci` when tests/oidc/node_modules is missing (a fresh clone; `make test` does the same)."""
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm).")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True, stdout=subprocess.DEVNULL)


class OidcProvider:
    """Two issuers of one process sharing a signing key: `issuer`, and `other_issuer` for wrong-issuer tests."""

    def __init__(self):
        self.port, self.other_port = _free_port(), _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.other_issuer = f"http://127.0.0.1:{self.other_port}"
        self.process: subprocess.Popen | None = None

    def start(self, log_path: pathlib.Path) -> "OidcProvider":
        node_modules_install()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is missing: install Node.js (Debian: apt-get install nodejs).")
        env = {**os.environ, "OIDC_PORT": str(self.port), "OIDC_OTHER_PORT": str(self.other_port)}
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [node, "provider.js"], cwd=PROVIDER_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for issuer in (self.issuer, self.other_issuer):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the OpenID provider exited:\n{log_path.read_text()[-3000:]}")
                try:
                    if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the OpenID provider did not start in time")
                time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self._log.close()

    def client_register(self, *, redirect_uris: list[str], name: str = "gatehouse", issuer: str | None = None) -> dict:
        """A client of `issuer` through dynamic client registration: {"client_id", "client_secret", ...}."""
        response = requests.post(
            f"{issuer or self.issuer}/reg",
            json={"redirect_uris": redirect_uris, "client_name": name, "token_endpoint_auth_method": "client_secret_basic"},
            timeout=5,
        )
        response.raise_for_status()
        return response.json()

    def sign_in(self, authorization_url: str, *, email: str, groups: str = "", email_unverified: bool = False,
                back_to: str) -> str:
        """Follows the authorization request through the provider's login page as `email`; returns the URL
        the provider sends the browser back to (it starts with `back_to`), without calling it."""
        browser = requests.Session()
        url = authorization_url
        for _ in range(10):
            response = browser.get(url, allow_redirects=False, timeout=5)
            if response.status_code in (302, 303):
                url = urljoin(url, response.headers["Location"])
                if url.startswith(back_to):
                    return url
                continue
            if response.status_code == 200 and "/interaction/" in urlsplit(url).path:
                form = {"email": email, "groups": groups}
                if email_unverified:
                    form["email_unverified"] = "1"
                posted = browser.post(url.rstrip("/") + "/login", data=form, allow_redirects=False, timeout=5)
                url = urljoin(url, posted.headers["Location"])
                if url.startswith(back_to):
                    return url
                continue
            raise AssertionError(f"unexpected answer {response.status_code} from the provider at {url}: {response.text[:500]}")
        raise AssertionError("the provider redirected too often")
