"""The JS client's reconnect backoff is the Python client's formula (client/backoff.py),
in milliseconds: checked as a property over random policies, attempts and draws."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pouchsync_sync.client.backoff import Backoff

policy = st.fixed_dictionaries({
    "initial": st.floats(0, 10, allow_nan=False), "factor": st.floats(1, 4, allow_nan=False),
    "max": st.floats(0, 60, allow_nan=False), "jitter": st.floats(0, 1, allow_nan=False),
    "attempt": st.integers(1, 40), "r": st.floats(0, 0.999999, allow_nan=False)})

SCRIPT = """
var B = require('pouchsync').Backoff;
var cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(function (c) {
  return new B({initialDelay: c.initial * 1000, factor: c.factor, maxDelay: c.max * 1000, jitter: c.jitter}).delay(c.attempt, c.r);
})));
"""


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: a node run each
@given(cases=st.lists(policy, min_size=1, max_size=30))
def test_js_backoff_delays_are_the_python_policys(node, cases):
    import subprocess

    path = node.work_dir / "backoff.js"
    path.write_text(SCRIPT)
    proc = subprocess.run(["node", str(path)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=60, env=node.env(), check=True)
    delays = json.loads(proc.stdout)
    for case, delay_ms in zip(cases, delays):
        expected = Backoff(initial_delay=case["initial"], factor=case["factor"],
                           max_delay=case["max"], jitter=case["jitter"]).delay(case["attempt"], case["r"])
        assert abs(delay_ms / 1000 - expected) <= 1e-9 * max(1.0, expected), (case, delay_ms, expected)
