"""``probekit record``: a user's checkpoints x pool -> a trajectory in the reference store's format."""
from __future__ import annotations

import argparse

from probekit.cli.outputs import add_overwrite_flag

EPILOG = """\
examples:
  probekit record --checkpoints out/ --data prompts.jsonl --text-field prompt --out traj/
  probekit record --checkpoints 'runs/step-*' --data pool.jsonl --text-field text --tokenizer tok/ --out traj/ \\
      --order-parameter loss:topic=rare
  probekit record --checkpoints 'ckpt/*.pt' --model-factory mymodels.py:build --loss classification \\
      --data pool.csv --input-field x1 --input-field x2 --target-field y --out traj/ --onset 400 --midpoint 700
  torchrun --nproc-per-node 2 $(which probekit) record --distributed --checkpoints out/ --data pool.jsonl \\
      --text-field text --out traj/

checkpoints: a Trainer output directory (its checkpoint-N folders), model directories (paths or
globs; the step is the last number in each name, or --steps), or state-dict files (*.pt, *.pth,
*.bin, *.safetensors) with --model-factory MODULE:FUNCTION (or FILE.py:FUNCTION).
transition: --onset STEP [--midpoint STEP], or --order-csv FILE (step,value rows), or
--order-parameter METRIC:WHERE (METRIC loss or accuracy; WHERE a slice of the pool such as
topic=rare, or eval=PATH), read by the reference families' 10%/50% rule.
resume: losses are staged in OUT.partial/ per checkpoint; a rerun continues where a killed one
stopped, and a finished trajectory is not recomputed (docs/record.md).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record a training run's per-sample losses as a trajectory",
        description="Compute the loss of every pool example at every checkpoint of your own training run and "
        "write it as a trajectory directory in the format of the reference transitions (probekit.eval), "
        "with the transition given by hand or read off an order parameter.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="PATH",
                   help="Trainer output directory, model directories, state-dict files, or globs of them")
    p.add_argument("--data", required=True, help="the pool: a .jsonl/.json/.csv/.parquet/.arrow file, a datasets "
                   "directory, or builtin:NAME")
    p.add_argument("--out", required=True, help="the trajectory directory to write (never one of the inputs)")
    p.add_argument("--name", help="the trajectory's name (default: the --out directory's name)")
    p.add_argument("--steps", type=int, nargs="+", metavar="STEP", help="one step per checkpoint, in the paths' natural order (numbers compared as numbers: step20 before step100)")
    p.add_argument("--model-class", metavar="MODULE:NAME",
                   help="class whose from_pretrained loads model directories (default from --loss)")
    p.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                   help="builds the model for state-dict files (no arguments; the state dict is loaded strictly)")
    p.add_argument("--loss", default="causal_lm",
                   help="causal_lm (default), classification, regression, or MODULE:FUNCTION (model, batch) -> [b]")
    p.add_argument("--text-field", help="text column (tokenized; causal_lm default: 'text')")
    p.add_argument("--input-field", action="append", metavar="COLUMN",
                   help="numeric input column, repeatable (side by side), or one column of vectors")
    p.add_argument("--target-field", help="target column (classification: class ids; regression: numbers)")
    p.add_argument("--id-field", help="column holding example ids (default: derived from content)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer directory (default: the first checkpoint's)")
    p.add_argument("--max-length", type=int, help="truncate sequences to this many tokens (default: the tokenizer's)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; cuda, cuda:1)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default 32)")
    p.add_argument("--autocast", default="none", choices=["none", "bf16", "fp16"], help="autocast (default none)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype the weights are loaded in (default float32)")
    p.add_argument("--selection-checkpoint", type=int, metavar="STEP",
                   help="the checkpoint probe designs select on (default: the first)")
    g = p.add_argument_group("transition (one of --onset, --order-csv, --order-parameter)")
    g.add_argument("--onset", type=int, metavar="STEP", help="the transition's onset step, given by hand")
    g.add_argument("--midpoint", type=int, metavar="STEP", help="its midpoint step (with --onset)")
    g.add_argument("--order-csv", metavar="FILE", help="an order parameter as step,value rows")
    g.add_argument("--order-name", help="the CSV series' name (default: its value column's header, else the file name)")
    g.add_argument("--order-parameter", action="append", default=[], metavar="METRIC:WHERE",
                   help="an order parameter measured while recording, repeatable: loss or accuracy, on a pool "
                   "slice (topic=rare) or eval=PATH")
    g.add_argument("--min-change", type=float,
                   help="smaller changes of the order parameter are no transition (default: 0.1 for accuracy, "
                   "else 10%% of the larger of its start and end values)")
    g.add_argument("--edge-records", type=int, metavar="K",
                   help="start and end values: medians of the first and last K records (default: a tenth, 1 to 10)")
    p.add_argument("--distributed", action="store_true",
                   help="share the checkpoints across torchrun's ranks (initialises the process group if needed)")
    add_overwrite_flag(p)
    p.set_defaults(run=run)


def _positive(value, flag: str) -> None:
    from probekit.errors import ProbekitUsageError

    if value is not None and value < 1:
        raise ProbekitUsageError(f"argument {flag}: must be an int >= 1. Got {value} instead.")


def run(args: argparse.Namespace) -> int:
    _positive(args.batch_size, "--batch-size")
    _positive(args.max_length, "--max-length")
    from probekit.record.recorder import record_run

    started = _init_distributed(args)
    try:
        outcome = record_run(
            args.checkpoints, args.data, args.out, loss=args.loss, text_field=args.text_field,
            input_field=args.input_field, target_field=args.target_field, id_field=args.id_field,
            tokenizer=args.tokenizer, max_length=args.max_length, steps=args.steps, model_class=args.model_class,
            model_factory=args.model_factory, dtype=args.dtype, device=args.device, batch_size=args.batch_size,
            autocast=args.autocast, name=args.name, selection_checkpoint=args.selection_checkpoint,
            onset=args.onset, midpoint=args.midpoint, order_csv=args.order_csv, order_name=args.order_name,
            order_parameters=args.order_parameter, min_change=args.min_change, edge_records=args.edge_records,
            overwrite=args.overwrite, distributed=True if args.distributed else "auto")
        rank = _rank()
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    traj = outcome.trajectory
    if rank != 0:  # rank 0 reports for every rank
        return 0
    m = traj.manifest
    if outcome.up_to_date:
        print(f"{traj.path} is up to date: {m['n_records']} checkpoints x {m['n_pool']} pool examples; nothing to do")
    else:
        print(f"recorded {m['n_records']} checkpoints x {m['n_pool']} pool examples in {outcome.wall_seconds:.1f} s "
              f"({outcome.computed} computed, {outcome.reused} reused)")
        print(f"  trajectory: {traj.path}")
    for t in traj.transitions:
        mid = "-" if t.midpoint_step is None else t.midpoint_step
        print(f"  transition {t.name}: onset {t.onset_step}, midpoint {mid} ({t.rule})")
    return 0


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _init_distributed(args: argparse.Namespace) -> bool:
    """--distributed under torchrun: initialise the default process group from its environment."""
    if not args.distributed:
        return False
    import os

    import torch.distributed as dist

    from probekit.errors import ProbekitUsageError

    if dist.is_available() and dist.is_initialized():
        return False
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise ProbekitUsageError("--distributed needs torchrun (RANK and WORLD_SIZE are not set): "
                                 "torchrun --nproc-per-node N $(which probekit) record --distributed ...")
    dist.init_process_group("nccl" if str(args.device).startswith("cuda") else "gloo")
    return True
