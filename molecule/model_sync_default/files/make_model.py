"""Write a small but real model for the model_sync scenario, or change one of its shards.

Runs on a test host beside a copy of tests/unit/model_dirs.py: the Qwen2.5-7B-Instruct-shaped model
(config, generation config, tokenizer files, 4 safetensors shards and their index), with dimensions
large enough (about 9 MB) that a throttled rsync can be interrupted mid-shard.

    make_model.py make DEST [--seed SEED]   a model; another seed gives other tensor bytes
    make_model.py make DEST --large         4 shards of 68 to 73 MiB (280 MiB), enough for model_rsync's streams
    make_model.py change SHARD              overwrite the end of a shard's tensor data (header and size kept)
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import model_dirs


def make(dest: Path, seed: str, large: bool) -> None:
    if large:
        # Every shard above the 64 MiB a stream of model_rsync carries at least.
        model_dirs.HIDDEN, model_dirs.KV_DIM, model_dirs.MLP, model_dirs.VOCAB = 768, 192, 1536, 4096
    else:
        model_dirs.HIDDEN, model_dirs.KV_DIM, model_dirs.MLP, model_dirs.VOCAB = 128, 32, 256, 2048
    if seed:
        model_dirs.tensor_data = lambda name, dtype, shape: random.Random(seed + name).randbytes(model_dirs.nbytes(dtype, shape))
    model_dirs.make_model(dest)


def change(shard: Path) -> None:
    with shard.open("r+b") as f:
        f.seek(-65536, os.SEEK_END)
        f.write(random.Random(f"changed {shard.name}").randbytes(65536))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make")
    make_parser.add_argument("dest", type=Path)
    make_parser.add_argument("--seed", default="")
    make_parser.add_argument("--large", action="store_true")
    change_parser = commands.add_parser("change")
    change_parser.add_argument("shard", type=Path)
    args = parser.parse_args()
    if args.command == "make":
        make(args.dest, args.seed, args.large)
    else:
        change(args.shard)


if __name__ == "__main__":
    main()
