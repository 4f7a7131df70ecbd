"""The operators' console: a live web page, JSON routes, `/metrics`, the `paygate ops`
command line, and dual control over the actions that change a payment.

Entry points for the gateway:

- `gateway.ops.web.add_routes(app, gw)`: every `/ops/...` route, `/metrics` and the page.
- `gateway.ops.cli.ops_command(argv)`: `paygate ops ...` against a running gateway.
- `gateway.ops.review.review_reason(transfer, settings)` and
  `gateway.ops.review.screen(transfer, settings)`: why a new payment must wait in `held`.
- `gateway.ops.schema.install(gw)`: the console's own tables (also run on first use).

Operators and their levels follow DOMAIN.md §5; docs/operations.md describes the
page, the actions, who may approve them, the command line and the metric names.
"""
