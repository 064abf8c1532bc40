"""Locust load for Basalt, for when one machine's `basalt bench` is not enough load.

Transactions are pre-signed by `basalt bench --export-txs` (so Python never reproduces the
canonical encoding or the ed25519 signature) and sent by Locust users as `POST /v1/txs`
batches, to one validator or to `basalt gateway`. A sample of them is followed to commit
(`GET /v1/txs/{hash}`) and reported as the request type CHAIN, name "submit→commit".

    pip install locust
    basalt devnet &                                   # gateway on :26690
    basalt bench --endpoints http://127.0.0.1:26650 --export-txs txs.jsonl --export-count 200000
    locust -f locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:26690

Distributed (Locust's master/worker mode): give every worker the same file (or its own
export of a *different* network) plus its index and the worker count; a worker sends only
the accounts with `account % BASALT_WORKERS == BASALT_WORKER_INDEX`, in file (= nonce)
order, so workers never leave nonce gaps behind each other:

    locust -f locustfile.py --master --expect-workers 2 --headless -u 100 -r 20 -t 5m \
        --host http://GATEWAY:26690
    BASALT_WORKERS=2 BASALT_WORKER_INDEX=0 locust -f locustfile.py --worker --master-host M
    BASALT_WORKERS=2 BASALT_WORKER_INDEX=1 locust -f locustfile.py --worker --master-host M

Settings (environment): BASALT_TXS (default txs.jsonl), BASALT_BATCH transactions per
request (10), BASALT_PACING seconds between one user's requests (0: as fast as answers
come), BASALT_COMMIT_SAMPLE share of transactions followed to commit (0.02),
BASALT_COMMIT_TIMEOUT seconds (30).

Outcomes, as `basalt bench` counts them: a typed 429/503 (`{"error": {"code": ...}}`) is
"shed" — its batch goes back to the front of the queue and is sent again, so no nonce gap
is left — while a transport error, an untyped or other 5xx answer, or a malformed body is a
system error. Both show as Locust failures, named apart.
"""

import collections
import json
import os
import random
import threading
import time

import gevent
from locust import FastHttpUser, constant_pacing, events, task
from locust.exception import StopUser

TXS_FILE = os.environ.get("BASALT_TXS", "txs.jsonl")
BATCH = int(os.environ.get("BASALT_BATCH", "10"))
PACING = float(os.environ.get("BASALT_PACING", "0"))
COMMIT_SAMPLE = float(os.environ.get("BASALT_COMMIT_SAMPLE", "0.02"))
COMMIT_TIMEOUT = float(os.environ.get("BASALT_COMMIT_TIMEOUT", "30"))
WORKERS = int(os.environ.get("BASALT_WORKERS", "1"))
WORKER_INDEX = int(os.environ.get("BASALT_WORKER_INDEX", "0"))

_queue = collections.deque()
_lock = threading.Lock()
_loaded = False


def _load():
    """This process's share of the pre-signed transactions, in nonce order."""
    global _loaded
    with _lock:
        if _loaded:
            return
        with open(TXS_FILE, encoding="utf-8") as lines:
            for line in lines:
                tx = json.loads(line)
                if tx["account"] % WORKERS == WORKER_INDEX:
                    _queue.append(tx)
        _loaded = True


def _take(count):
    with _lock:
        return [_queue.popleft() for _ in range(min(count, len(_queue)))]


def _put_back(batch):
    with _lock:
        _queue.extendleft(reversed(batch))


@events.init.add_listener
def _on_init(environment, **_kwargs):
    # The master sends nothing; workers and local runs load their share.
    if type(environment.runner).__name__ != "MasterRunner":
        _load()


def _typed_error_code(response):
    try:
        code = response.json()["error"]["code"]
        return code if isinstance(code, str) else None
    except Exception:  # noqa: BLE001 - any unreadable body is untyped
        return None


class BasaltSubmitter(FastHttpUser):
    """Sends the next batch of pre-signed transactions; follows a sample to commit."""

    wait_time = constant_pacing(PACING)

    @task
    def submit(self):
        batch = _take(BATCH)
        if not batch:
            raise StopUser()
        started = time.time()
        with self.client.post(
            "/v1/txs",
            json={"txs": [tx["tx"] for tx in batch]},
            name="POST /v1/txs",
            catch_response=True,
        ) as response:
            status = response.status_code
            if status == 200:
                self._check_results(response, batch, started)
            elif status in (429, 503) and _typed_error_code(response):
                _put_back(batch)
                response.failure(f"shed: {status} {_typed_error_code(response)}")
            else:
                response.failure(f"sys_error: HTTP {status}")

    def _check_results(self, response, batch, started):
        try:
            results = response.json()["results"]
        except Exception:  # noqa: BLE001
            response.failure("sys_error: malformed body")
            return
        if len(results) != len(batch):
            response.failure("sys_error: wrong number of results")
            return
        refused = collections.Counter()
        retry = []
        for tx, result in zip(batch, results):
            code = (result.get("error") or {}).get("code")
            if result.get("accepted") or code == "duplicate":
                if random.random() < COMMIT_SAMPLE:
                    gevent.spawn(self._follow, tx["hash"], started)
            elif code in ("mempool_full", "sender_full", "overloaded"):
                retry.append(tx)
                refused[f"shed: {code}"] += 1
            else:
                refused[f"rejected: {code}"] += 1
        if retry:
            _put_back(retry)
        if refused:
            response.failure(", ".join(f"{k} ×{v}" for k, v in sorted(refused.items())))
        else:
            response.success()

    def _follow(self, tx_hash, started):
        """Poll the transaction until it is committed; report submit→commit."""
        deadline = started + COMMIT_TIMEOUT
        while time.time() < deadline:
            with self.client.get(
                f"/v1/txs/{tx_hash}", name="GET /v1/txs/{hash}", catch_response=True
            ) as response:
                committed = response.status_code == 200 and response.json().get("status") == "committed"
                response.success()
            if committed:
                self._report(started, None)
                return
            gevent.sleep(0.1)
        self._report(started, TimeoutError(f"not committed within {COMMIT_TIMEOUT} s"))

    def _report(self, started, exception):
        events.request.fire(
            request_type="CHAIN",
            name="submit→commit",
            response_time=(time.time() - started) * 1000.0,
            response_length=0,
            exception=exception,
            context={},
        )
