"""The per-org hash chain of audit events: canonical form, HMAC, appending and verifying.

Each event is signed with HMAC-SHA256 under GATEHOUSE_AUDIT_HMAC_KEY, a secret that lives outside
the database, over its canonical form: sorted-key, compact JSON of every field, including the org,
its sequence number and the previous event's hash. Whoever can write to the database but does not
hold the key cannot change, insert, remove or reorder events without `audit_verify` noticing.

The canonical form is computed from the values as PostgreSQL gives them back, so that signing
(from Python values) and verifying (from stored values) agree: numbers that are whole are written
as integers (jsonb may return 1e20 as 100000000000000000000), times in UTC with microseconds,
addresses in their short form.
"""
import dataclasses
import datetime
import hashlib
import hmac
import ipaddress
import json
import uuid

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from audit.models import AuditEvent, AuditVerification

GENESIS_HASH = "0" * 64
# First key of pg_advisory_xact_lock(int, int): "AU"dit, so that other advisory locks never collide.
CHAIN_LOCK_NAMESPACE = 0x4155
EVENT_FIELDS = (
    "id", "org_id", "seq", "prev_hash", "created_at", "actor_kind", "actor_user_id", "actor_token_id",
    "actor_label", "action", "target_type", "target_id", "changes", "source_ip", "user_agent", "request_id",
)
VERIFICATION_FIELDS = (
    "id", "org_id", "created_at", "ok", "events_checked", "head_seq", "head_hash", "failure_seq", "failure_kind",
    "message", "actor_label",
)


def _hmac_key() -> bytes:
    key = settings.GATEHOUSE_AUDIT_HMAC_KEY
    if not key:
        raise ImproperlyConfigured(
            "GATEHOUSE_AUDIT_HMAC_KEY is not set: audit events cannot be signed "
            "(run `python -m ops.services ensure`, or set it in the environment)."
        )
    return key.encode()


def _canonical_value(value):
    if isinstance(value, dict):
        return {str(key): _canonical_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _canonical_address(value: str | None) -> str | None:
    if not value:
        return None
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def canonical_bytes(values: dict, fields: tuple[str, ...]) -> bytes:
    data = {name: _canonical_value(values[name]) for name in fields}
    if "source_ip" in data:
        data["source_ip"] = _canonical_address(data["source_ip"])
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def mac(values: dict, fields: tuple[str, ...] = EVENT_FIELDS) -> str:
    return hmac.new(_hmac_key(), canonical_bytes(values, fields), hashlib.sha256).hexdigest()


def _row_values(instance, fields: tuple[str, ...]) -> dict:
    return {name: getattr(instance, name) for name in fields}


def event_seal(event: AuditEvent, *, using: str = "default") -> None:
    """Gives a new, unsaved event the next sequence number of its org and signs it.

    Runs inside the transaction that will insert the event. The per-org advisory lock is held until
    that transaction ends, so concurrent writers of one org take turns: numbers have no gaps (a
    rolled-back transaction gives its number back) and each event links to the one committed before it.
    """
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CHAIN_LOCK_NAMESPACE, str(event.org_id)])
        cursor.execute(
            "SELECT seq, hash FROM audit_auditevent WHERE org_id = %s ORDER BY seq DESC LIMIT 1", [event.org_id]
        )
        last = cursor.fetchone()
    event.seq, event.prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    event.hash = mac(_row_values(event, EVENT_FIELDS))


def verification_seal(verification: AuditVerification) -> None:
    verification.hash = mac(_row_values(verification, VERIFICATION_FIELDS), VERIFICATION_FIELDS)


# Verification ---------------------------------------------------------------------------

class Tampering:
    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"


@dataclasses.dataclass(frozen=True)
class ChainReport:
    org_id: uuid.UUID
    events_checked: int
    head_seq: int
    head_hash: str
    failure_seq: int | None = None
    failure_kind: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.failure_seq is None


VERIFY_BATCH = 2000


def _stored_events(org_id):
    """The org's events in chain order as plain values, read in batches by a server-side cursor."""
    return AuditEvent.objects.filter(org_id=org_id).order_by("seq").values(*EVENT_FIELDS, "hash").iterator(
        chunk_size=VERIFY_BATCH
    )


def _signed_values(row: dict) -> dict:
    return {name: row[name] for name in EVENT_FIELDS}


def _is_signed(row: dict) -> bool:
    return hmac.compare_digest(mac(_signed_values(row)), row["hash"])


def _classify_bad_signature(org_id, row: dict, expected_prev: str, following: dict | None) -> tuple[str, str]:
    """What happened to an event whose signature does not match, judged by the links around it
    (`prev_hash` is signed, so a genuine event still names its original predecessor)."""
    seq = row["seq"]
    if row["prev_hash"] == expected_prev:
        if following is not None and following["prev_hash"] == expected_prev:
            return Tampering.INSERTED, f"event {seq} is not part of the signed chain: the next event skips it"
        return Tampering.MODIFIED, f"event {seq} does not match its signature: it was modified or forged"
    predecessor = (
        AuditEvent.objects.filter(org_id=org_id, hash=row["prev_hash"]).values_list("seq", flat=True).first()
    )
    if predecessor is not None and predecessor >= seq:
        return (
            Tampering.REORDERED,
            f"event {seq} was signed after the event now at {predecessor}: the events were reordered",
        )
    if predecessor is not None:
        return Tampering.REORDERED, f"event {seq} was signed right after event {predecessor}: events were moved"
    return (
        Tampering.DELETED,
        f"the event signed before event {seq} is missing: events were deleted and the rest renumbered "
        "(or this event was modified)",
    )


def chain_verify(*, org_id, anchor: AuditVerification | None = None) -> ChainReport:
    """Walks an org's chain from the first event and reports the first one that was modified, deleted,
    inserted or reordered. `anchor` is the last passing verification: the event it ended at must still
    be there, unchanged, so that deleting the newest events is caught too. Call it inside `org_context`."""
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
    head_seq, head_hash = 0, GENESIS_HASH

    def report(seq=None, kind="", message=""):
        return ChainReport(org_id, checked, head_seq, head_hash, seq, kind, message)

    rows = _stored_events(org_id)
    row = next(rows, None)
    while row is not None:
        following = next(rows, None)
        seq = row["seq"]
        if seq > expected_seq:
            missing = f"event {expected_seq} is" if seq == expected_seq + 1 else f"events {expected_seq} to {seq - 1} are"
            return report(expected_seq, Tampering.DELETED, f"{missing} missing")
        if seq < expected_seq:  # cannot happen while (org, seq) is unique
            return report(seq, Tampering.INSERTED, f"event {seq} appears twice")
        if not _is_signed(row):
            kind, message = _classify_bad_signature(org_id, row, expected_prev, following)
            return report(seq, kind, message)
        if row["prev_hash"] != expected_prev:
            return report(seq, Tampering.REORDERED, f"event {seq} does not follow event {seq - 1}")
        if anchor is not None and seq == anchor.head_seq and row["hash"] != anchor.head_hash:
            return report(seq, Tampering.MODIFIED, f"event {seq} is not the event verified on {anchor.created_at:%Y-%m-%d}")
        checked += 1
        head_seq, head_hash = seq, row["hash"]
        expected_seq, expected_prev = seq + 1, row["hash"]
        row = following
    if anchor is not None and anchor.head_seq > head_seq:
        return report(
            head_seq + 1, Tampering.DELETED,
            f"the chain ends at event {head_seq}, but it reached event {anchor.head_seq} when it was verified "
            f"on {anchor.created_at:%Y-%m-%d %H:%M} UTC: the newest events were deleted",
        )
    return report()


def verification_is_signed(verification: AuditVerification) -> bool:
    expected = mac(_row_values(verification, VERIFICATION_FIELDS), VERIFICATION_FIELDS)
    return hmac.compare_digest(expected, verification.hash)

