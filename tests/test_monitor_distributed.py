"""The monitor under torch.distributed: 2 processes on gloo (CPU), against a single-process run.

Probes are sharded across the ranks, the losses gathered on rank 0, the
statistics computed there once. With the single-process run forwarding the
probes in chunks of one shard, both runs do the same arithmetic, so the
statistics must be bit-identical; with one whole-batch pass they agree to
float rounding.
"""
from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

STEPS = 14


def _setup(n):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    return model, torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _run(n, batch_size=None, fail_rank=None, rank=0, break_rank0=False, faster_on_rank0=False):
    """One monitored training; the same on every rank (same seeds, one thread).

    ``break_rank0``: the statistics raise once on rank 0 (after the gather, before the
    broadcast); ``faster_on_rank0``: on alarm, only rank 0 lowers the record interval.
    """
    from probekit.alarms import make_rule
    from probekit.monitor import Monitor
    from probekit.monitor.losses import classification_loss

    model, x, y = _setup(n)
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        if rank == fail_rank and calls["n"] == 3:
            raise RuntimeError("this rank's probe pass failed")
        return classification_loss(model, batch)

    records, events, recorded = [], [], []
    sink = type("ListSink", (), {"write": lambda self, r: records.append(r.as_dict())})()

    def on_alarm(event):
        events.append(event.step)
        if faster_on_rank0 and event.monitor.is_main:
            event.monitor.every = 1

    mon = Monitor(model, (x, y), loss_fn, every=2 if faster_on_rank0 else 1, window=4,
                  alarm=make_rule("running-min", ratio=1.01, persistence=1), sinks=[sink], on_alarm=on_alarm,
                  batch_size=batch_size)
    if break_rank0 and rank == 0:
        real = mon.rdm.compute
        stat_calls = {"n": 0}

        def compute():
            stat_calls["n"] += 1
            if stat_calls["n"] == 5:
                raise RuntimeError("statistics broke on rank 0")
            return real()

        mon.rdm.compute = compute
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(STEPS):
        if mon.step(step) is not None:
            recorded.append(step)
        for group in opt.param_groups:  # a jump in the learning rate: the losses move, the alarm fires
            group["lr"] = 0.5 if step < 8 else 5.0
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"records": records, "events": events, "alarm_steps": mon.alarm_steps, "counters": mon.counters,
            "is_main": mon.is_main, "recorded": recorded}


def _worker(rank, world, init_file, out_dir, n, options):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _run(n, rank=rank, **options)
        # Leave together: a rank that tears down while its peer still talks to it can abort in gloo
        # ("terminate called without an active exception", seen once here in ~25 runs).
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)


def _distributed(tmp_path, n, world=2, timeout=120, **options):
    from spawn_ranks import spawn_ranks

    tmp_path.mkdir(parents=True, exist_ok=True)
    spawn_ranks(_worker, (world, str(tmp_path / "init"), str(tmp_path), n, options), world, timeout,
                "distributed monitor run")
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("n", [48, 47])  # even shards, and shards of 24 and 23
def test_two_ranks_on_gloo_match_a_single_process(tmp_path, n, one_torch_thread):
    rank0, rank1 = _distributed(tmp_path, n)
    shard = -(-n // 2)
    same_arithmetic = _run(n, batch_size=shard)  # forward in chunks of one shard, as the ranks do
    assert rank0["is_main"] and not rank1["is_main"]
    assert rank0["records"] == same_arithmetic["records"]  # bit-identical statistics, every record
    assert rank1["records"] == []  # rank 1 computes no statistics and writes no sink
    assert rank0["alarm_steps"] == rank1["alarm_steps"] == same_arithmetic["alarm_steps"] != []
    assert rank0["events"] == rank1["events"] == same_arithmetic["alarm_steps"]  # on_alarm runs on every rank
    whole = _run(n)  # one pass over all probes: float rounding apart
    for a, b in zip(rank0["records"], whole["records"]):
        assert a["mean_loss"] == pytest.approx(b["mean_loss"], rel=1e-6)
        if a["ready"]:
            assert a["shc"] == pytest.approx(b["shc"], rel=1e-4) and a["pr"] == pytest.approx(b["pr"], rel=1e-4)


def test_failures_on_either_rank_never_hang_the_other(tmp_path, one_torch_thread):
    rank0, rank1 = _distributed(tmp_path / "a", 48, fail_rank=1)  # rank 1's probe pass fails once
    assert rank1["counters"]["failed_batches"] == 1
    assert rank0["counters"]["failed_batches"] == 1 and rank0["counters"]["nonfinite_records"] == 0
    assert [r["ok"] for r in rank0["records"]].count(False) == 1 and not rank0["records"][2]["ok"]
    assert len(rank0["records"]) == STEPS  # every step recorded on both sides of the failure
    rank0, rank1 = _distributed(tmp_path / "b", 48, break_rank0=True)  # rank 0 fails between the collectives
    assert rank0["counters"]["record_errors"] == 1 and rank0["recorded"] == [s for s in range(STEPS) if s != 4]
    assert rank1["recorded"] == list(range(STEPS))  # rank 1 was not left waiting in the broadcast


def test_an_interval_changed_on_rank_0_only_is_kept_by_every_rank(tmp_path, one_torch_thread):
    rank0, rank1 = _distributed(tmp_path, 48, faster_on_rank0=True)
    assert rank0["alarm_steps"] == rank1["alarm_steps"] != []
    first = rank0["alarm_steps"][0]
    assert rank0["recorded"] == rank1["recorded"] == list(range(0, first + 1, 2)) + list(range(first + 1, STEPS))


def test_unequal_chunk_counts_keep_the_ranks_in_step(tmp_path, one_torch_thread):
    # 49 probes on 2 ranks in chunks of 8: shards of 25 and 24 need 4 and 3 passes; rank 1 pads with one
    rank0, rank1 = _distributed(tmp_path, 49, batch_size=8)
    single = _run(49, batch_size=8)
    assert len(rank0["records"]) == STEPS and all(r["ok"] for r in rank0["records"])
    for a, b in zip(rank0["records"], single["records"]):
        assert a["mean_loss"] == pytest.approx(b["mean_loss"], rel=1e-6)
