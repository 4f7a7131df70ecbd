"""An extension passes the messages it does not take to the handler registered before it
(gateway.handlers.handler_before), looked up once."""

from types import SimpleNamespace

from gateway.handlers import handler_before


class Extension:
    def __init__(self, name: str, types: tuple[str, ...]) -> None:
        self.name, self.types, self.asked = name, types, 0

    def handlers(self) -> dict:
        self.asked += 1
        return {t: f"{self.name}:{t}" for t in self.types}


def test_the_handler_before_an_extension_is_the_last_one_registered_ahead_of_it():
    """Own handlers, changed by the extensions installed earlier and by none installed
    later; each extension's table, and the gateway's own, is made once for each type
    however many messages pass."""
    first, second, third = Extension("first", ("900",)), Extension("second", ("111",)), \
        Extension("third", ("900", "111"))
    gw = SimpleNamespace(extensions=[first, second, third])
    made = []

    def own() -> dict:
        made.append(1)
        return {"900": "own:900", "111": "own:111"}
    found_first, found_third = {}, {}

    for _ in range(3):
        before_first = (handler_before(gw, first, "900", own, found_first),
                        handler_before(gw, first, "111", own, found_first))
        before_third = (handler_before(gw, third, "900", own, found_third),
                        handler_before(gw, third, "111", own, found_third))

    assert before_first == ("own:900", "own:111")
    assert before_third == ("first:900", "second:111")
    assert (first.asked, second.asked, third.asked) == (2, 2, 0)
    assert len(made) == 4  # once a type for each of the two extensions
