"""What a resolver may report as progress, and the reporter synchronous execution gets."""

import pytest

from services.common.identity import ANONYMOUS, OperationContext
from services.common.progress import MAX_MESSAGE_CHARS, checked_progress


@pytest.mark.parametrize(("done", "total"), [(-1, 5), (6, 5), (0, -1), (True, 5)])
def test_values_no_client_could_show_are_refused(done: int, total: int) -> None:
    with pytest.raises(ValueError, match="progress"):
        OperationContext(principal=ANONYMOUS).progress.report(done=done, total=total)


def test_long_messages_are_cut_and_good_values_pass_unchanged() -> None:
    done, total, message = checked_progress(3, 5, "x" * 1000)

    assert (done, total) == (3, 5)
    assert message is not None
    assert len(message) == MAX_MESSAGE_CHARS
    assert checked_progress(0, 0, None) == (0, 0, None)
