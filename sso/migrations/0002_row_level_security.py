from django.db import migrations

from tenants.rls import EnableRowLevelSecurity

# The login page finds an org's IdP from an email domain before any org is known: PostgreSQL
# shows only the row of the domain that `sso.selectors.sso_domain_get_dangerously_unscoped` names.
SSO_DOMAIN_MATCH = "domain = NULLIF(current_setting('app.sso_domain', true), '')"


class Migration(migrations.Migration):
    dependencies = [("sso", "0001_initial"), ("tenants", "0002_row_level_security")]

    operations = [
        EnableRowLevelSecurity("ssoconnection"),
        EnableRowLevelSecurity("ssodomain", select_also=SSO_DOMAIN_MATCH),
        EnableRowLevelSecurity("ssoidentity"),
    ]
