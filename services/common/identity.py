"""Who is asking: the principal every operation belongs to, and the context schemas receive."""

from dataclasses import dataclass

from contracts.names import require_safe_token


@dataclass(frozen=True)
class Principal:
    """A user within a tenant. Both become parts of subjects and keys, so both are safe tokens."""

    tenant: str
    user: str

    def __post_init__(self) -> None:
        require_safe_token(self.tenant, "tenant")
        require_safe_token(self.user, "user")


# Until authentication is configured every caller is this development principal.
ANONYMOUS = Principal(tenant="default", user="anonymous")


@dataclass
class OperationContext:
    """The context a target schema's resolvers get, synchronously and in the background alike.

    ``operation_id`` is set when the resolver runs as part of an async operation.
    """

    principal: Principal
    operation_id: str | None = None
