"""The one way an outgoing connection keeps a password it must send out again: Fernet-encrypted."""

from __future__ import annotations

from accounts import crypto


class EncryptedPassword:
    """For models with a ``password_encrypted`` text field that no form edits directly.

    ``set_password`` is the only way in (an empty string removes it); answers and pages say
    ``has_password``, never the value.
    """

    password_encrypted: str

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, password: str) -> None:
        self.password_encrypted = crypto.encrypt(password) if password else ""

    def get_password(self) -> str:
        return crypto.decrypt(self.password_encrypted) if self.password_encrypted else ""
