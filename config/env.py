"""Settings input: the process environment, over the files that `ops/services.py` writes."""
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
# Written by `ops/services.py`: the embedded servers' URLs (when used) and the local
# installation's generated secrets. Real environment variables always win over both.
ENV_FILES = (BASE_DIR / ".data" / "services.env", BASE_DIR / ".data" / "secrets.env")


def _env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


_FILE_DEFAULTS = {name: value for path in ENV_FILES for name, value in _env_file(path).items()}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, _FILE_DEFAULTS.get(name, default))


def env_int(name: str, default: int) -> int:
    return int(env_str(name, str(default)))


def env_bool(name: str, default: bool) -> bool:
    return env_str(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def database_settings_from_url(url: str) -> dict:
    """postgresql://user:password@host:port/name?host=/socket/dir -> Django DATABASES entry."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = unquote(parts.hostname or "") or query.get("host", [""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
    }
