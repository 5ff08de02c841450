"""Who made a change: a console user, an admin token, the platform master key or a system task,
and from where (client address, user agent, request id)."""
import contextlib
import contextvars
import dataclasses
import uuid

from audit.origin import client_ip, request_id_for, user_agent


class ActorKind:
    USER = "user"
    ADMIN_TOKEN = "admin_token"
    MASTER_KEY = "master_key"
    SYSTEM = "system"

    choices = [(USER, "User"), (ADMIN_TOKEN, "Admin token"), (MASTER_KEY, "Master key"), (SYSTEM, "System")]


@dataclasses.dataclass(frozen=True)
class Actor:
    kind: str  # an ActorKind
    user_id: int | None = None
    token_id: uuid.UUID | None = None
    label: str = ""
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def system(cls, task_name: str) -> "Actor":
        return cls(kind=ActorKind.SYSTEM, label=task_name)


MASTER_KEY_LABEL = "platform master key"


def actor_from_request(request) -> Actor:
    from accounts.authentication import MasterKeyPrincipal
    from accounts.models import AdminToken

    origin = {"ip": client_ip(request), "user_agent": user_agent(request), "request_id": request_id_for(request)}
    auth = getattr(request, "auth", None)
    if isinstance(auth, MasterKeyPrincipal):
        return Actor(kind=ActorKind.MASTER_KEY, label=MASTER_KEY_LABEL, **origin)
    if isinstance(auth, AdminToken):
        label = f"{auth} ({auth.user.email})"
        return Actor(kind=ActorKind.ADMIN_TOKEN, user_id=auth.user_id, token_id=auth.id, label=label, **origin)
    return Actor(kind=ActorKind.USER, user_id=request.user.pk, label=request.user.email, **origin)


_current_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("current_actor", default=None)


def current_actor() -> Actor | None:
    """The actor of the request or task being served, for the field-level change entries
    that django-auditlog writes from model signals (services pass their actor explicitly)."""
    return _current_actor.get()


@contextlib.contextmanager
def acting_as(actor: Actor):
    token = _current_actor.set(actor)
    try:
        yield actor
    finally:
        _current_actor.reset(token)
