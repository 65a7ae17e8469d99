"""What a button carries: every press the bot makes reads back as itself, and it makes none it could not."""

from __future__ import annotations

import pytest

from handlers.buttons import MAX_IDENT, Press, Verb, press_data, read_press


@pytest.mark.parametrize(("verb", "ident", "arg"), [
    (Verb.ASSIGN, 12, "t3"), (Verb.ASSIGN, 12, None), (Verb.RATE, 7, 5), (Verb.RETURN, 9, "not_mine"),
    (Verb.VISIT, 1, "ok"), (Verb.DUPLICATE, MAX_IDENT, "n"), (Verb.FOLLOW, 40, None), (Verb.EMERGENCY, 2, "y"),
])
def test_a_press_reads_back_as_itself(verb: Verb, ident: int, arg: str | int | None) -> None:
    assert read_press(press_data(verb, ident, arg)) == Press(verb, ident, None if arg is None else str(arg))


@pytest.mark.parametrize(("verb", "ident", "arg"), [
    (Verb.RATE, 7, None),  # stars are the answer: a bare rating press means nothing
    (Verb.RATE, 7, 6), (Verb.ASSIGN, 1, "x3"), (Verb.VISIT, 1, "meh"), (Verb.STATUS, 1, "extra"),
    (Verb.FOLLOW, 0, None), (Verb.FOLLOW, -4, None), (Verb.FOLLOW, MAX_IDENT + 1, None),
])
def test_a_press_that_would_not_read_back_is_never_made(verb: Verb, ident: int, arg: str | int | None) -> None:
    with pytest.raises(ValueError, match="reads back"):
        press_data(verb, ident, arg)
