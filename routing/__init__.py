"""Routing: the participant directory, our institutions, and which channel a payment takes.

    from routing import Directory, Institutions, Router, RouteRequest, load_default

    router = load_default()
    decision = router.decide(RouteRequest(...), on_date=date, hvps_open=True)
    decision.channel, decision.action, decision.message_type, decision.explain()

See docs/routing.md for the file formats, the rule table and the defaults.
"""

from routing.defaults import load_default
from routing.directory import Directory
from routing.institutions import Institution, Institutions
from routing.limits import BepsLimits, Limit
from routing.participants import Participant
from routing.request import RouteRequest
from routing.router import RouteDecision, Router

__all__ = [
    "BepsLimits", "Directory", "Institution", "Institutions", "Limit", "Participant",
    "RouteDecision", "RouteRequest", "Router", "load_default",
]
