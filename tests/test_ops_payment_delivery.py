"""`paygate ops payment` says where an HVPS payment's message stands with the NPC: a
payment `sent` that the NPC refused each time reads as not taken, with its attempts."""

from __future__ import annotations

from gateway.ops import cli_render

HEAD = {"id": "P2026120700000004", "direction": "out", "channel": "hvps", "state": "sent",
        "history": [], "requests": []}


def delivery_line(a: dict) -> str:
    return next(line for line in cli_render.payment(a).splitlines()
                if line.startswith("delivery"))


def test_a_sent_payment_the_npc_refused_each_time_reads_as_not_taken() -> None:
    line = delivery_line(dict(HEAD, delivery={"taken_by_npc": False, "attempts": 3,
                                              "attempts_not_taken": 3}))
    assert line.split(None, 1)[1] == ("never taken by the NPC; 3 link attempts, "
                                      "3 provably not taken")


def test_a_payment_an_attempt_may_have_given_to_the_npc_is_not_said_not_taken() -> None:
    """Six attempts, three of them ended without proof either way (a timeout): the NPC may
    have the message, which is why a hold of it is refused; the line says so."""
    line = cli_render.delivery({"taken_by_npc": False, "attempts": 6,
                                "attempts_not_taken": 3})
    assert line == (
        "not acknowledged by the NPC, which may have it (3 attempts ended without proof "
        "either way); 6 link attempts, 3 provably not taken")


def test_a_taken_payment_and_one_without_a_message_of_its_own() -> None:
    taken = delivery_line(dict(HEAD, delivery={"taken_by_npc": True, "attempts": 1,
                                               "attempts_not_taken": 0}))
    assert taken.split(None, 1)[1] == "taken by the NPC; 1 link attempt, 0 provably not taken"
    assert delivery_line(dict(HEAD, channel="beps", delivery=None)).split() == ["delivery", "-"]
