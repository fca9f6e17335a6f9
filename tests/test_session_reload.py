"""Issue 16: one batch has one owner. A reload's values apply together, between two batches.

Before, `mlsd run`'s reload assigned the pipeline's zone and row format, the follower's
grace and the session's config one by one while a batch could be waiting on its reverse
DNS lookups: that batch was parsed under the old config and written under the new one.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from mlsd import config
from mlsd.enrich.enricher import Enricher
from mlsd.ingest import session
from tests.followkit import Env, Writer


async def _reload_during_a_batch(env: Env) -> None:
    cfg = config.load(env.conf)
    s = session.open_session(cfg, Enricher(cfg, None))
    try:
        new = replace(
            cfg,
            csv=replace(cfg.csv, date_format="maillogsentinel"),
            follow=replace(cfg.follow, rotate_grace=7.0),
        )
        async with s.commit_lock:  # a batch is being read, enriched and committed
            reload = asyncio.create_task(s.apply_reload(new))
            await asyncio.sleep(0.05)
            assert not reload.done()
            assert (s.cfg, s.pipeline.date_format, s.follower.grace) == (cfg, "iso", 1.0)
        await reload
        assert (s.cfg, s.pipeline.date_format, s.follower.grace) == (new, "maillogsentinel", 7.0)
    finally:
        session.close_session(s)


def test_a_reload_waits_for_the_batch_in_flight(env: Env) -> None:
    Writer(env.log).seq(range(2))
    asyncio.run(_reload_during_a_batch(env))
