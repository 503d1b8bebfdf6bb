"""Durable steps: `@step`, retries, timeouts, claims, strict replay (see docs/steps.md).

    from doeff import do, run_sync, step, Retry

    @step(version=1, retry=Retry(attempts=3), timeout=30)
    def fetch(url):
        return http_get(url)

    @do
    def report(urls):
        pages = yield gather(*[fetch(u) for u in urls])
        return len(pages)
"""

from doeff.effects.cache import Claim, cached
from doeff.effects.retry import Retry, retry
from doeff.effects.timeout import timeout
from doeff.steps.code import fingerprint
from doeff.steps.explain import Recorded, differences, parse_key, varying
from doeff.steps.keys import canonical, register_key_type
from doeff.steps.replay import strict_handlers
from doeff.steps.step import Step, StepCall, step

__all__ = [
    "Claim",
    "Recorded",
    "Retry",
    "Step",
    "StepCall",
    "cached",
    "canonical",
    "differences",
    "fingerprint",
    "parse_key",
    "register_key_type",
    "retry",
    "step",
    "strict_handlers",
    "timeout",
    "varying",
]
