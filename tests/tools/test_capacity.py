"""The bench's capacity table: activities counted per queue from real histories, connection
peaks per pool from real `pg_stat_activity`."""

from __future__ import annotations

import asyncio

import asyncpg

from kit.settings import Settings, database_url_for
from tests.platform import Platform
from tools.capacity import ConnectionPeaks, WorkerCapacity, activities_per_run, worker_capacity
from workflows.checkout.contract import workflow_id


async def test_activities_are_counted_by_the_queue_that_ran_them(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_visa")
    await platform.wait_status(handle, "completed")

    counted = await activities_per_run(platform.client, [workflow_id(checkout.checkout_id)])

    assert counted["payments"] >= 2  # authorize and capture at least
    assert counted["products"] >= 1  # the price check
    assert all(counted[q] >= 1 for q in ("cart", "inventory", "orders", "shipping")), counted
    assert "coupons" not in counted  # no coupon, no coupon activity
    assert await activities_per_run(platform.client, []) == {}


async def test_connection_peaks_keep_each_pools_highest_count(migrated: Settings) -> None:
    dsn = database_url_for(migrated.database.url, "postgres")

    async def connect(name: str) -> asyncpg.Connection:
        return await asyncpg.connect(dsn, server_settings={"application_name": name})

    async with ConnectionPeaks(dsn, interval_s=0.02) as peaks:
        workers = [await connect("checkout-capacitytest:worker") for _ in range(3)]
        api = await connect("checkout-capacitytest:api")
        unrolled = await connect("checkout-capacitytest")  # no role: not a pool we size
        await asyncio.sleep(0.2)
        for connection in [*workers[:2], api, unrolled]:
            await connection.close()
        await asyncio.sleep(0.2)
        await workers[2].close()

    assert peaks.peak[("capacitytest", "worker")] == 3
    assert peaks.peak[("capacitytest", "api")] == 1
    assert not any(domain == "capacitytest" and role == "" for domain, role in peaks.peak)


def test_capacity_is_activities_over_cpu_per_domain_worker() -> None:
    rows = worker_capacity(
        {"payments": 2.0, "orders": 3.0},
        {"worker-payments": 0.02, "worker-orders": 0.0, "api": 0.5},
        {("payments", "worker"): 4, ("payments", "api"): 9},
        pool_ceiling=10,
    )
    by_domain = {row.domain: row for row in rows}
    payments = by_domain["payments"]
    assert payments == WorkerCapacity("payments", 2.0, 0.02, 4, 10)
    assert payments.activities_per_core_s == 100.0
    assert payments.checkouts_per_core_s == 50.0
    assert by_domain["orders"].activities_per_core_s is None  # no CPU measured: no figure
    assert by_domain["coupons"].activities_per_checkout == 0.0
