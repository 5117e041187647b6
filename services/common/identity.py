"""Who is asking: the principal every operation belongs to, and the context schemas receive."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.names import decode_id, encode_id, require_id_token
from services.common.progress import ProgressReporter


@dataclass(frozen=True)
class Principal:
    """A user within a tenant.

    ``tenant`` and ``user`` are safe tokens (see ``contracts.names.encode_id``): they become
    parts of subjects and keys as they are. ``tenant_id`` and ``user_id`` are the ids they stand
    for. ``session_variables`` are the caller's Hasura-style claims, for action handlers.
    """

    tenant: str
    user: str
    session_variables: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        require_id_token(self.tenant, "tenant")
        require_id_token(self.user, "user")

    @classmethod
    def of(
        cls, tenant_id: str, user_id: str, session_variables: Mapping[str, str] | None = None
    ) -> "Principal":
        """The principal for these ids, whatever characters they contain."""
        return cls(
            tenant=encode_id(tenant_id, "tenant"),
            user=encode_id(user_id, "user"),
            session_variables=dict(session_variables or {}),
        )

    @property
    def tenant_id(self) -> str:
        """The tenant id as the identity provider spelled it."""
        return decode_id(self.tenant)

    @property
    def user_id(self) -> str:
        """The user id as the identity provider spelled it."""
        return decode_id(self.user)


def session_variables(principal: Principal) -> dict[str, str]:
    """Hasura's session variables for a principal, from its identity (never a request body):
    its own ``x-hasura-*`` claims, with the user and tenant ids asyncgate identified. No role
    is made up: ``x-hasura-role`` only when the caller's token has one."""
    return {
        **principal.session_variables,
        "x-hasura-user-id": principal.user_id,
        "x-hasura-tenant-id": principal.tenant_id,
    }


# Until authentication is configured every caller is this development principal.
ANONYMOUS = Principal(tenant="default", user="anonymous")
# A WebSocket's principal until its connection_init is authenticated; no operation can run
# before that (both protocols refuse operations before connection_ack).
UNAUTHENTICATED = Principal(tenant="-", user="-")


@dataclass
class OperationContext:
    """The context a target schema's resolvers get, synchronously and in the background alike.

    ``operation_id`` is set when the resolver runs as part of an async operation.
    ``progress`` takes the resolver's progress reports (services/common/progress.py): published
    when the operation runs in the background, discarded when it runs synchronously.
    """

    principal: Principal
    operation_id: str | None = None
    progress: ProgressReporter = field(default_factory=ProgressReporter)
