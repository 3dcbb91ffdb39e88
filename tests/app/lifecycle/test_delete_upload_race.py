"""A delete racing uploads of the same bytes (issue 16, defect 2), 200 rounds against the
real ASGI app: its upload and delete routes run in the app's thread pool, concurrently, on
a SQLite file and on PostgreSQL.

Each round starts from a row X of the bytes; then one DELETE of X and two uploads of the
same bytes are sent at once, each after a random pause of up to 4 ms. What must hold:

* no row without its file, no file (or temp file, or blob row) that no row names: after
  every round (nothing is in flight then);
* an upload's answer names a row that existed when it was answered. Precisely: the delete
  is the only one to remove a row, and it removes X only, so an answer naming another row
  Y is a row the round created, which must still exist (with its file and bytes) when the
  round is over; an answer naming X must come from an upload sent before the delete of X
  had completed (it read X before the delete committed);
* one row per tenant and bytes: the uploads of a round that did not answer X answer the
  same new row, created (201) by exactly one of them.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from _lifecycle_files import mlp_bytes, upload

pytestmark = pytest.mark.anyio

ROUNDS = 200


async def timed(pause: float, request) -> tuple[float, float, object]:
    await asyncio.sleep(pause)
    sent = time.monotonic()
    response = await request
    return sent, time.monotonic(), response


async def test_delete_racing_uploads_of_the_same_bytes(client, assert_consistent) -> None:
    data = mlp_bytes(7)
    chance = random.Random(16)
    outcomes = {"uploads answered X": 0, "uploads answered a new row": 0}
    x = (await upload(client, data)).json()["id"]
    for round_number in range(ROUNDS):
        pauses = [chance.uniform(0, 0.03) for _ in range(3)]  # both orders, on either database
        deleted, *uploads = await asyncio.gather(
            timed(pauses[0], client.delete(f"/v1/checkpoints/{x}")),
            timed(pauses[1], upload(client, data)),
            timed(pauses[2], upload(client, data)),
        )
        context = f"round {round_number}"
        assert deleted[2].status_code == 204, (context, deleted[2].text)
        answers = []
        for sent, _, response in uploads:
            assert response.status_code in (200, 201), (context, response.text)
            row_id = response.json()["id"]
            answers.append((row_id, response.status_code))
            if row_id == x:
                assert response.status_code == 200, context
                assert sent < deleted[1], f"{context}: told X exists after X was deleted"
                outcomes["uploads answered X"] += 1
            else:
                assert row_id > x, context  # never an old id again
                outcomes["uploads answered a new row"] += 1
        new = {(row_id, code) for row_id, code in answers if row_id != x}
        new_ids = {row_id for row_id, _ in new}
        assert len(new_ids) <= 1, f"{context}: two rows for the same bytes: {answers}"
        created = [code for row_id, code in answers if row_id != x and code == 201]
        assert len(created) == (1 if new_ids else 0), f"{context}: {answers}"

        listed = (await client.get("/v1/checkpoints")).json()["items"]
        assert [row["id"] for row in listed] == sorted(new_ids), f"{context}: {answers}"
        for row_id in new_ids:
            download = await client.get(f"/v1/checkpoints/{row_id}/file")
            assert download.status_code == 200 and download.content == data, context
        assert_consistent()
        if new_ids:
            x = new_ids.pop()
        else:  # the delete came last: start the next round from a fresh row
            response = await upload(client, data)
            assert response.status_code == 201, response.text
            x = response.json()["id"]
    # both orders happened, or the test did not race anything
    assert all(outcomes.values()), outcomes
