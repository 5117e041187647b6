"""The projector checks a late fold against deletes only if it calls a fold late well before an
asyncDelete stops waiting for it."""

from services.edge.delete import FOLDED_WAIT_S
from services.projector.handlers import LATE_FOLD_S


def test_a_fold_is_late_well_before_a_delete_stops_waiting_for_the_projector() -> None:
    # The margin is for nats-server's clock (a request's stored time) and the projector's.
    assert FOLDED_WAIT_S - LATE_FOLD_S >= 1.0
