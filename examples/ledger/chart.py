"""The deterministic chart of accounts every example company has."""

from dataclasses import dataclass

# The head of the Norwegian standard chart of accounts (NS 4102), in the order Business NXT
# returns it; the seed's example result is its first five rows.
_NAMED_ACCOUNTS: tuple[tuple[int, str], ...] = (
    (1000, "Forskning og utvikling"),
    (1020, "Konsesjoner"),
    (1030, "Patenter"),
    (1040, "Lisenser"),
    (1050, "Varemerker"),
    (1060, "Andre rettigheter"),
    (1070, "Utsatt skattefordel"),
    (1080, "Goodwill"),
    (1100, "Forretningsbygg"),
    (1120, "Bygningsmessige anlegg"),
    (1130, "Anlegg under utførelse"),
    (1140, "Jord- og skogbrukseiendommer"),
    (1150, "Tomter og andre grunnarealer"),
    (1160, "Boliger inkludert tomter"),
    (1200, "Maskiner og anlegg"),
    (1230, "Personbiler"),
    (1250, "Inventar"),
    (1280, "Kontormaskiner"),
    (1500, "Kundefordringer"),
    (1900, "Kontanter"),
    (1920, "Bankinnskudd"),
    (2000, "Aksjekapital"),
    (2400, "Leverandørgjeld"),
    (2700, "Utgående merverdiavgift"),
    (3000, "Salgsinntekt, avgiftspliktig"),
    (4000, "Innkjøp av råvarer og halvfabrikater"),
    (5000, "Lønn til ansatte"),
    (6300, "Leie lokaler"),
    (7700, "Styre- og bedriftsforsamlingsmøter"),
    (8050, "Annen renteinntekt"),
)
ACCOUNT_COUNT = 342


@dataclass(frozen=True)
class Account:
    """One general ledger account."""

    account_no: int
    name: str


def _build_chart() -> tuple[Account, ...]:
    accounts = [Account(account_no=no, name=name) for no, name in _NAMED_ACCOUNTS]
    next_no = 8100
    while len(accounts) < ACCOUNT_COUNT:
        accounts.append(Account(account_no=next_no, name=f"Konto {next_no}"))
        next_no += 5
    return tuple(accounts)


CHART: tuple[Account, ...] = _build_chart()
