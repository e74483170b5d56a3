"""The admin login form: throttle, password, then the TOTP code, all before a session exists.

Zato logs the user in and checks the TOTP code afterwards; here nothing is created (no
session, no ``user_logged_in``) until both factors have passed.

Order, for every POST:

1. the attempt is recorded (``accounts.throttle``) and refused at once if its username or
   client address has failed too often: "Too many failed attempts; try again in N seconds";
2. malformed input (over-long username or password, a code that is not 6 digits, a missing
   username or password) is a failure, reported on the field, with no password check;
3. the password;
4. the TOTP code, when ``ADMIN_REQUIRE_TOTP`` is on or when the user has a TOTP key anyway
   (a blank code fails here, like a wrong one); a user without a key, when one is required,
   is told to ask an administrator for ``manage.py reset_totp_key``;
5. ``user.otp_device`` is set, so django-otp's ``user_logged_in`` handler marks the new
   session as verified.

A wrong password and a wrong code get the same message. django-otp says "Invalid token"
distinctly, which tells whoever is guessing passwords that they have found one; the audit
list (``LoginAttempt.reason``) and the log say which it was. The message for a user without
a TOTP key does reveal that the password was right: that account cannot log in at all, and
the administrator needs to hear about it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from accounts import enrolment, throttle, totp
from accounts.models import LoginAttempt

MAX_PASSWORD_LENGTH = 4096
CODE_FIELD_ALIASES = ("totp_code",)  # Zato web-admin's field name

Outcome = LoginAttempt.Outcome
Stage = LoginAttempt.Stage


class CodeInput(forms.TextInput):
    """A text box for the code that never echoes what was sent: a used code is worthless, junk is noise."""

    def format_value(self, value: Any) -> str | None:
        return None


class AdminLoginForm(AdminAuthenticationForm):
    password = forms.CharField(
        label="Password", strip=False, max_length=MAX_PASSWORD_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    # Not required on the field: a blank code is checked after the password, so that a user who has
    # no key yet learns that from the page (and a blank code is a failed attempt like a wrong one).
    otp_token = forms.CharField(
        label="Authentication code", required=False, strip=True,
        widget=CodeInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": "Please enter the correct %(username)s, password and authentication code for a staff "
                         "account. Note that the username and password are case-sensitive.",
        "invalid_login_no_totp": "Please enter the correct %(username)s and password for a staff account (and the "
                                 "authentication code, if you have set up two-factor authentication). Note that "
                                 "the username and password are case-sensitive.",
        "no_device": "Your account has no two-factor authentication key yet, and the admin requires one. Ask an "
                     "administrator to run: python manage.py reset_totp_key %(user)s",
        "malformed_code": "Enter the 6-digit code from your authenticator app (digits only).",
    }

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        data = kwargs.get("data")
        if data is not None and not data.get("otp_token"):
            alias = next((data[name] for name in CODE_FIELD_ALIASES if data.get(name)), None)
            if alias is not None:
                data = data.copy()
                data["otp_token"] = alias
                kwargs["data"] = data
        super().__init__(request, *args, **kwargs)
        # Django's form only sets the HTML maxlength; an over-long username must be refused here too.
        self.fields["username"].validators.append(MaxLengthValidator(self.fields["username"].max_length))
        self.fields["otp_token"].help_text = (
            "The 6-digit code your authenticator app shows for this site."
            if settings.ADMIN_REQUIRE_TOTP
            else "Only if you have set up two-factor authentication."
        )

    def clean_otp_token(self) -> str:
        code = self.cleaned_data.get("otp_token", "")
        if not code:
            return ""
        normalised = totp.normalise_code(code)
        if normalised is None:
            raise ValidationError(self.error_messages["malformed_code"], code="malformed_code")
        return normalised

    @sensitive_variables("password")
    def clean(self) -> dict[str, Any]:
        attempt = throttle.begin(self.request, self._typed_username())
        wait = throttle.wait_seconds(attempt)
        if wait:
            throttle.finish(attempt, Outcome.THROTTLED, "throttled")
            raise ValidationError(throttle.message(wait), code="throttled")
        if self.errors:
            throttle.finish(attempt, Outcome.FAILURE, self._input_problem())
            return self.cleaned_data
        password = self.cleaned_data["password"]
        user = authenticate(self.request, username=self.cleaned_data["username"], password=password)
        if user is None:
            user = throttle.user_named(self.cleaned_data["username"])
            throttle.finish(attempt, Outcome.FAILURE, "wrong password", user=user)
            raise self._invalid_login()
        try:
            self.confirm_login_allowed(user)
        except ValidationError:
            throttle.finish(attempt, Outcome.FAILURE, "not a staff account", user=user)
            raise
        self._check_code(attempt, user)
        self.user_cache = user
        return self.cleaned_data

    def _check_code(self, attempt: LoginAttempt, user: Any) -> None:
        """The second factor; on success ``user.otp_device`` tells django-otp to verify the session."""
        device = enrolment.confirmed_device(user)
        if device is None:
            if settings.ADMIN_REQUIRE_TOTP:
                throttle.finish(attempt, Outcome.FAILURE, "no TOTP device", stage=Stage.TOTP, user=user)
                raise ValidationError(self.error_messages["no_device"], code="no_device",
                                      params={"user": user.get_username()})
            throttle.finish(attempt, Outcome.SUCCESS, stage=Stage.PASSWORD, user=user)
            return
        code = self.cleaned_data.get("otp_token", "")
        verdict = device.check_code(code) if code else totp.Verdict.MALFORMED
        if verdict is not totp.Verdict.ACCEPTED:
            reason = verdict.value if code else "missing code"
            throttle.finish(attempt, Outcome.FAILURE, reason, stage=Stage.TOTP, user=user)
            raise self._invalid_login()
        user.otp_device = device
        throttle.finish(attempt, Outcome.SUCCESS, stage=Stage.TOTP, user=user)

    def _typed_username(self) -> str:
        value = self.data.get("username", "")
        return value.strip() if isinstance(value, str) else ""

    def _input_problem(self) -> str:
        """The audit reason for input refused before any check, named after the first bad field."""
        for field, reason in (("username", "malformed username"), ("password", "malformed password"),
                              ("otp_token", "malformed code")):
            if field in self.errors:
                return reason
        return "malformed input"

    def _invalid_login(self) -> ValidationError:
        key = "invalid_login" if settings.ADMIN_REQUIRE_TOTP else "invalid_login_no_totp"
        return ValidationError(self.error_messages[key], code="invalid_login",
                               params={"username": self.username_field.verbose_name})
