"""A stand-in for the next release of the checkout workflow, built the way the patching policy
(docs/deployment.md, "Deploying workflow changes") asks: the new behaviour behind
`workflow.patched`, under the same workflow type, so that checkouts started by the previous
release replay unchanged and new ones take the new path.

The change here is deliberately observable and harmless: a new checkout records the release
that ran it in its memo (`release`); a checkout started by the previous release must not.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.checkout.contract import WORKFLOW_TYPE
    from workflows.checkout.models import CheckoutInput, CheckoutStatusBody
    from workflows.checkout.workflow import CheckoutWorkflow

PATCH = "release-memo"
RELEASE = "next"


@workflow.defn(name=WORKFLOW_TYPE)
class NextCheckoutWorkflow(CheckoutWorkflow):
    """Today's checkout plus one patched change at the start of the run."""

    @workflow.run
    async def run(self, input: CheckoutInput) -> CheckoutStatusBody:
        """Record the release in the memo (new checkouts only), then run the checkout."""
        if workflow.patched(PATCH):
            workflow.upsert_memo({"release": RELEASE})
        return await super().run(input)
