"""The exceptions of the dnsserver package, all under one base."""

from __future__ import annotations

from dnsserver.records import Question


class DnsError(Exception):
    """Something went wrong in the DNS server."""

    def __init__(self, message: str | None = None) -> None:
        # Like dnspython, the docstring is the default message.
        super().__init__(message or (self.__doc__ or "").strip())


class FormError(DnsError):
    """The DNS message is malformed."""

    def __init__(self, message: str | None = None, *, question: Question | None = None) -> None:
        super().__init__(message)
        # The question, when it could be read before the message went wrong, so
        # that the FORMERR reply can echo it.
        self.question = question


class ConfigError(DnsError):
    """The DNS server's configuration is invalid."""


class BindError(DnsError):
    """The DNS server cannot listen on its address."""
