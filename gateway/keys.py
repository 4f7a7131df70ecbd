"""Every Redis key and stream the gateway writes, in one place.

Streams carry work between stages; the database is the truth. An entry holds only ids
(outbox row, inbox row, payment), never the payment itself, so a lost stream loses
nothing: on start-up, every outbox and inbox row not yet done is put back.
"""

PREFIX = "paygate"
GROUP = "paygate"

# HVPS lanes by header priority: 1 extra urgent, 2 urgent, 3 normal; read in that order.
HVPS_LANES = tuple(f"{PREFIX}:out:hvps:{p}" for p in (1, 2, 3))
OUT_LINK = f"{PREFIX}:out:link"        # other outbound messages (990 acks, 710, queries)
BEPS_TX = f"{PREFIX}:out:beps"         # BEPS transactions waiting to be packed
BEPS_PACKAGES = f"{PREFIX}:out:beps:packages"  # sealed BEPS packages to send
INBOUND = f"{PREFIX}:in"               # inbound messages to process
WEBHOOK = f"{PREFIX}:webhook"          # status changes to push to the core system
DEAD = f"{PREFIX}:dead"                # dead letters, with the reason
EVENTS = f"{PREFIX}:events"            # pub/sub channel for the operators' page
CLUSTER = f"{PREFIX}:cluster"          # pub/sub channel between gateway processes
# The link session's state as the NPC last answered it (gateway.session), kept for a
# gateway process that starts after the answer came: the others heard it on CLUSTER.
LINK_SESSION = f"{PREFIX}:link:session"
# The link's state across gateway processes (gateway.linkshare): the names of the
# processes that wrote theirs, each one's under its name (expiring), and the cluster's
# discard episode.
LINK_VIEWS = f"{PREFIX}:link:views"
LINK_VIEW_PREFIX = f"{PREFIX}:link:view:"
LINK_DISCARDING = f"{PREFIX}:link:discarding"

# Operators' sessions and sign-in failure counters (keys with a TTL, not streams).
OPS_SESSION_PREFIX = f"{PREFIX}:ops:session:"
OPS_SIGN_IN_FAILURES_PREFIX = f"{PREFIX}:ops:sign_in_failures:"
# Core-system request signatures taken, each kept until its timestamp leaves the window
# (gateway.api.authenticate): one seen again is a replay.
API_SIGNATURE_PREFIX = f"{PREFIX}:api:signature:"

ALL_STREAMS = (*HVPS_LANES, OUT_LINK, BEPS_TX, BEPS_PACKAGES, INBOUND, WEBHOOK)
# The streams whose entries are deliveries to the NPC: held while the link is down, and
# dead-lettered once, their outbox row `dead`, when the NPC refuses them.
TO_NPC = (*HVPS_LANES, OUT_LINK, BEPS_PACKAGES)


def lane_for_priority(priority: int) -> str:
    assert priority in (1, 2, 3), f"header priority is 1, 2 or 3, not {priority}"
    return HVPS_LANES[priority - 1]
