"""The example ledger schema: the default target that answers the seed's example queries.

Data is deterministic: every company has the same chart of accounts (see ``chart.py``). Accounts
created through the mutation live in the process that ran it, which is enough for a demo; a real
target schema talks to its own database.
"""

import asyncio
import base64
import time

import strawberry
from graphql import GraphQLError

from examples.ledger.chart import CHART, Account
from services.common.identity import OperationContext

MAX_PAGE_SIZE = 1000
# ledgerExport's rows are wide (about 520 bytes of JSON each, most of it the posting text in
# ``name``): graphql-core spends some 9 us on every field it completes, so a 50 MB export of
# narrow rows took half a minute, and of these a few seconds. The cap is about 200 MB of result.
MAX_EXPORT_ROWS = 400_000
_POSTING_TEXT = (
    "Periodisering av kostnader i henhold til avtale, fordelt over regnskapsåret med like "
    "beløp per periode; motpost ført mot balansekonto for forskuddsbetalte kostnader. "
    "Bilaget er kontrollert mot faktura og kontoutskrift, godkjent av budsjettansvarlig og "
    "attestert i henhold til fullmaktsmatrisen. Avvik mellom bestilling og levering er "
    "avklart med leverandør, og eventuelle kreditnotaer er registrert på samme prosjekt. "
    "Merverdiavgift er behandlet etter gjeldende satser."
)
MAX_REPORT_SECONDS = 3600.0
# busyReport holds a CPU: a minute at most.
MAX_BUSY_SECONDS = 60.0
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


@strawberry.type
class LedgerRow:
    """One line of a ledger export."""

    line: int
    account_no: int
    name: str
    amount: float


def ledger_row(line: int) -> LedgerRow:
    """Export line ``line``: a pure function of the number, so every export of n rows is the
    same (a posting of between -10,000.00 and 10,000.00 to one of the chart's accounts)."""
    account = CHART[(line * 7) % len(CHART)]
    cents = (line * 7919) % 2_000_001 - 1_000_000
    return LedgerRow(
        line=line,
        account_no=account.account_no,
        name=f"{account.name}, bilag {line}: {_POSTING_TEXT}",
        amount=cents / 100,
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
    def ledger_export(self, rows: int) -> list[LedgerRow]:
        """``rows`` deterministic ledger lines, numbered from 1: a result as large as asked for
        (about 520 bytes of JSON a row: 100,000 rows are about 50 MB), to try large results
        with."""
        if not 0 <= rows <= MAX_EXPORT_ROWS:
            raise GraphQLError(
                f"rows must be between 0 and {MAX_EXPORT_ROWS}",
                extensions={"code": "BAD_USER_INPUT"},
            )
        return [ledger_row(line) for line in range(1, rows + 1)]

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

    @strawberry.field
    def busy_report(self, seconds: float) -> str:
        """A report that computes for ``seconds`` without ever yielding, holding the event loop
        the whole time, as a CPU-bound resolver or one making a blocking call does."""
        if not 0 <= seconds <= MAX_BUSY_SECONDS:
            raise GraphQLError(
                f"seconds must be between 0 and {MAX_BUSY_SECONDS:g}",
                extensions={"code": "BAD_USER_INPUT"},
            )
        until = time.monotonic() + seconds
        spins = 0
        while time.monotonic() < until:
            spins += 1
        return f"report computed in {seconds:g} s"


@strawberry.type
class Mutation:
    """Change a company's ledger."""

    @strawberry.mutation
    def use_company(self, no: int) -> CompanyMutation:
        """Changes to the company with number ``no``."""
        return CompanyMutation(no=_company(no))


schema = strawberry.Schema(query=Query, mutation=Mutation)
