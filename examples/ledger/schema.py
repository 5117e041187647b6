"""The example ledger schema: the default target that answers the seed's example queries.

Data is deterministic: every company has the same chart of accounts (see ``chart.py``). Accounts
created through the mutation live in the process that ran it, which is enough for a demo; a real
target schema talks to its own database.
"""

import asyncio
import base64

import strawberry
from graphql import GraphQLError

from examples.ledger.chart import CHART, Account
from services.common.identity import OperationContext

MAX_PAGE_SIZE = 1000
MAX_REPORT_SECONDS = 3600.0
# slowReport's sections: it reports progress after each one.
REPORT_STEPS = 10

_created_accounts: dict[int, list[Account]] = {}


def _accounts_of(company_no: int) -> list[Account]:
    return [*CHART, *_created_accounts.get(company_no, [])]


def _cursor(index: int) -> str:
    return base64.b64encode(f"account:{index}".encode()).decode()


def _index_after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        prefix, index = base64.b64decode(cursor, validate=True).decode().split(":")
        if prefix != "account":
            raise ValueError(prefix)
        return int(index) + 1
    except ValueError:
        raise GraphQLError(
            f"'{cursor}' is not a cursor this field issued",
            extensions={"code": "BAD_USER_INPUT"},
        ) from None


@strawberry.type
class GeneralLedgerAccount:
    """An account in the general ledger."""

    account_no: int
    name: str


@strawberry.type
class PageInfo:
    """Where a page ends and whether another follows."""

    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class GeneralLedgerAccountConnection:
    """One page of accounts with the total count."""

    total_count: int
    items: list[GeneralLedgerAccount]
    page_info: PageInfo


@strawberry.type
class Company:
    """A company's ledger."""

    no: int

    @strawberry.field
    def general_ledger_account(
        self, first: int | None = None, after: str | None = None
    ) -> GeneralLedgerAccountConnection:
        """The company's accounts in account order, ``first`` at a time after ``after``."""
        if first is not None and not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(
                f"first must be between 0 and {MAX_PAGE_SIZE}",
                extensions={"code": "BAD_USER_INPUT"},
            )
        accounts = _accounts_of(self.no)
        start = _index_after(after)
        end = len(accounts) if first is None else min(len(accounts), start + first)
        page = accounts[start:end]
        return GeneralLedgerAccountConnection(
            total_count=len(accounts),
            items=[GeneralLedgerAccount(account_no=a.account_no, name=a.name) for a in page],
            page_info=PageInfo(
                has_next_page=end < len(accounts),
                end_cursor=_cursor(end - 1) if page else None,
            ),
        )


@strawberry.input
class GeneralLedgerAccountInput:
    """A new account."""

    account_no: int
    name: str


@strawberry.type
class GeneralLedgerAccountMutationResult:
    """What a create changed."""

    affected_rows: int
    items: list[GeneralLedgerAccount]


@strawberry.type
class CompanyMutation:
    """Changes to a company's ledger."""

    no: int

    @strawberry.field(name="generalLedgerAccount_create")
    def general_ledger_account_create(
        self, values: list[GeneralLedgerAccountInput]
    ) -> GeneralLedgerAccountMutationResult:
        """Add accounts; an account number already in the ledger is refused."""
        taken = {a.account_no for a in _accounts_of(self.no)}
        new = [Account(account_no=v.account_no, name=v.name) for v in values]
        clashes = sorted({a.account_no for a in new} & taken)
        if clashes or len({a.account_no for a in new}) != len(new):
            raise GraphQLError(
                f"account numbers already in use: {clashes or 'duplicated in the input'}",
                extensions={"code": "CONFLICT"},
            )
        _created_accounts.setdefault(self.no, []).extend(new)
        return GeneralLedgerAccountMutationResult(
            affected_rows=len(new),
            items=[GeneralLedgerAccount(account_no=a.account_no, name=a.name) for a in new],
        )


def _company(no: int) -> int:
    if no <= 0:
        raise GraphQLError(f"no company has number {no}", extensions={"code": "NOT_FOUND"})
    return no


@strawberry.type
class Query:
    """Read a company's ledger, or wait for a slow report."""

    @strawberry.field
    def use_company(self, no: int) -> Company:
        """The company with number ``no``."""
        return Company(no=_company(no))

    @strawberry.field
    def whoami(self, info: strawberry.Info[OperationContext, None]) -> str:
        """The caller's user id, as asyncgate passes it to every resolver (sync or async)."""
        return info.context.principal.user_id

    @strawberry.field
    async def slow_report(
        self, info: strawberry.Info[OperationContext, None], seconds: float
    ) -> str:
        """A report that takes ``seconds`` to arrive, without holding a CPU meanwhile; it
        reports its progress in REPORT_STEPS steps (seen in asyncResult's ``progress``)."""
        if not 0 <= seconds <= MAX_REPORT_SECONDS:
            raise GraphQLError(
                f"seconds must be between 0 and {MAX_REPORT_SECONDS:g}",
                extensions={"code": "BAD_USER_INPUT"},
            )
        for step in range(1, REPORT_STEPS + 1):
            await asyncio.sleep(seconds / REPORT_STEPS)
            info.context.progress.report(
                done=step, total=REPORT_STEPS, message=f"{step} of {REPORT_STEPS} sections"
            )
        return f"report ready after {seconds:g} s"


@strawberry.type
class Mutation:
    """Change a company's ledger."""

    @strawberry.mutation
    def use_company(self, no: int) -> CompanyMutation:
        """Changes to the company with number ``no``."""
        return CompanyMutation(no=_company(no))


schema = strawberry.Schema(query=Query, mutation=Mutation)
