import base64

import pytest

from keys import crypto, services
from keys.crypto import DecryptionFailed, encryption_key_generate, secret_decrypt, secret_encrypt
from keys.models import ProviderCredential
from tenants.context import org_context
from tests.conftest import SYSTEM
from tests.keys.test_services import PROVIDER_KEY

pytestmark = pytest.mark.django_db

ASSOCIATED_DATA = b"org:credential"


@pytest.fixture
def two_keys(settings):
    """A ring whose first key ("new") encrypts; returns a function that drops the old key."""
    old, new = encryption_key_generate(), encryption_key_generate()
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"old:{old}"

    def rotate(*, keep_old: bool = True) -> None:
        settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new},old:{old}" if keep_old else f"new:{new}"

    return rotate


def test_round_trip_with_a_fresh_nonce_each_time():
    key_id, first = secret_encrypt(PROVIDER_KEY, associated_data=ASSOCIATED_DATA)
    _, second = secret_encrypt(PROVIDER_KEY, associated_data=ASSOCIATED_DATA)
    assert first != second and PROVIDER_KEY not in first
    assert secret_decrypt(first, key_id=key_id, associated_data=ASSOCIATED_DATA) == PROVIDER_KEY


def test_tampered_ciphertext_is_refused():
    key_id, ciphertext = secret_encrypt(PROVIDER_KEY, associated_data=ASSOCIATED_DATA)
    raw = bytearray(base64.b64decode(ciphertext))
    raw[-1] ^= 1
    with pytest.raises(DecryptionFailed) as raised:
        secret_decrypt(base64.b64encode(raw).decode(), key_id=key_id, associated_data=ASSOCIATED_DATA)
    assert PROVIDER_KEY not in str(raised.value)


def test_ciphertext_copied_onto_another_row_does_not_decrypt(org_a):
    a, _ = org_a
    with org_context(a.id):
        first = services.credential_create(org=a, name="one", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM)
        second = services.credential_create(org=a, name="two", provider_kind="openai", api_key="other", actor=SYSTEM)
        ProviderCredential.objects.filter(id=second.id).update(ciphertext=first.ciphertext)
        second.refresh_from_db()
        with pytest.raises(DecryptionFailed):
            services.credential_api_key(second)


def test_key_missing_from_the_ring_is_refused(two_keys):
    key_id, ciphertext = secret_encrypt(PROVIDER_KEY, associated_data=ASSOCIATED_DATA)
    two_keys(keep_old=False)
    with pytest.raises(DecryptionFailed, match="old"):
        secret_decrypt(ciphertext, key_id=key_id, associated_data=ASSOCIATED_DATA)


def test_rotation_then_reencrypt_moves_every_credential_to_the_new_key(org_a, two_keys):
    a, _ = org_a
    with org_context(a.id):
        services.credential_create(org=a, name="one", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM)
        two_keys()
        assert crypto.current_key_id() == "new"
        assert services.credentials_reencrypt(org=a, actor=SYSTEM) == 1
        assert services.credentials_reencrypt(org=a, actor=SYSTEM) == 0
        two_keys(keep_old=False)
        credential = ProviderCredential.objects.get(name="one")
        assert credential.encryption_key_id == "new"
        assert services.credential_api_key(credential) == PROVIDER_KEY
