"""Who made a change: a console user, an admin token, the platform master key or a system task."""
import dataclasses
import uuid


@dataclasses.dataclass(frozen=True)
class Actor:
    kind: str  # "user" | "admin_token" | "master_key" | "system"
    user_id: int | None = None
    token_id: uuid.UUID | None = None
    label: str = ""
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def system(cls, task_name: str) -> "Actor":
        return cls(kind="system", label=task_name)


MASTER_KEY_LABEL = "platform master key"


def actor_from_request(request) -> Actor:
    from accounts.authentication import MasterKeyPrincipal
    from accounts.models import AdminToken

    ip = request.META.get("REMOTE_ADDR")
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:256]
    auth = getattr(request, "auth", None)
    if isinstance(auth, MasterKeyPrincipal):
        return Actor(kind="master_key", label=MASTER_KEY_LABEL, ip=ip, user_agent=user_agent)
    if isinstance(auth, AdminToken):
        return Actor(
            kind="admin_token", user_id=auth.user_id, token_id=auth.id, label=str(auth), ip=ip, user_agent=user_agent
        )
    return Actor(kind="user", user_id=request.user.pk, label=request.user.email, ip=ip, user_agent=user_agent)
