from django import forms
from django.contrib.auth.forms import AuthenticationForm

from tenants.models import Role, slug_validator


class EmailLoginForm(AuthenticationForm):
    username = forms.EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True}))


class TeamCreateForm(forms.Form):
    slug = forms.CharField(max_length=50, validators=[slug_validator], help_text="Lower-case letters, digits, hyphens.")
    name = forms.CharField(max_length=100)


class MemberInviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class SsoDiscoveryForm(forms.Form):
    email = forms.EmailField(label="Work email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))


class MfaCodeForm(forms.Form):
    code = forms.CharField(
        label="Code", max_length=32, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
    )
