"""The abstract base of every tenant-owned model and its fail-closed manager."""
import uuid

from django.db import models

from tenants.context import MissingOrgContext, current_org_id


class OrgScopedManager(models.Manager):
    """Returns only the current org's rows and refuses to run without an org context."""

    def get_queryset(self):
        org_id = current_org_id()
        if org_id is None:
            raise MissingOrgContext(
                f"{self.model.__name__} queried outside org_context(); "
                "use org_context(org_id) or the model's dangerously_unscoped manager"
            )
        return super().get_queryset().filter(org_id=org_id)


class OrgOwnedModel(models.Model):
    """UUID primary key, an `org`, the scoped default manager and an explicitly named escape hatch.

    Every concrete subclass gets row-level security through `tenants.rls.EnableRowLevelSecurity`
    in its migration; the `tenants.E001` system check fails when one does not.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("tenants.Org", on_delete=models.CASCADE, related_name="+")

    objects = OrgScopedManager()
    # For lookups that must happen before the org is known (key hash -> key). Row-level
    # security still applies in PostgreSQL, so the SQL must be allowed by a policy.
    dangerously_unscoped = models.Manager()

    class Meta:
        abstract = True
