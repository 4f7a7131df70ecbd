"""webhook_resend names a webhook row by its id: an id no row can have is refused as
malformed (target_malformed), not met with an internal error."""

from __future__ import annotations

import pytest

from gateway.errors import PaygateError
from gateway.ops.testing import LoopThread, OpsRig

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("target", ["9" * 25, "12345678901234567890"])
def test_a_webhook_row_id_past_any_row_s_is_refused_as_malformed(tmp_path, target):
    loop = LoopThread()
    rig = loop.run(OpsRig(tmp_path).start())
    try:
        with pytest.raises(PaygateError) as refused:
            loop.run(rig.ops.console.request(rig.ops.directory.get("op1"),
                                             "webhook_resend", target, {}))
    finally:
        loop.run(rig.stop())
        loop.close()

    assert [p.code for p in refused.value.problems] == ["target_malformed"]
