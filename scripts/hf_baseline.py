"""Is `hf_sdpa` a fair baseline? Time plain ``BertModel(input_ids, attention_mask)`` outside padbench.

The same BERT shape and the same batch lengths as ``padbench run --model hf:bert`` (seed 0), the
model built straight from transformers and padded the way users pad (pad_token_id, 1/0 mask),
timed with torch.utils.benchmark beside padbench's `hf_sdpa` step, in alternating rounds so
that load from other processes hits both alike. Prints the medians over rounds and the fastest
round of each (on a shared machine the fastest round is the one least hit by others), and the
ratios of both.

    python scripts/hf_baseline.py --dist uniform --mode inference \\
        --hf-config num_hidden_layers=2,hidden_size=256,num_attention_heads=4,intermediate_size=1024
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.utils.benchmark as tbench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dist", default="uniform")
    ap.add_argument("--mode", default="inference", choices=("inference", "training"))
    ap.add_argument("--hf-config", default="")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import transformers

    from padbench.lengths import resolve_max_len
    from padbench.models.hf_load import parse_overrides
    from padbench.runner import Case, lengths_for, prepare

    max_len = resolve_max_len(args.dist, None)
    lengths = lengths_for(args.dist, args.batch_size, max_len, 0, None)
    config = transformers.BertConfig(**parse_overrides(args.hf_config), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    model = transformers.BertModel(config, add_pooling_layer=True)  # sdpa is the default
    width = max(lengths)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, config.vocab_size, (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids[mask == 0] = config.pad_token_id

    def plain():
        if args.mode == "inference":
            model.eval()
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
        else:
            model.train()
            model.zero_grad(set_to_none=True)
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            (out * mask[..., None]).sum().backward()

    prepared = prepare(Case("hf_sdpa", args.dist, mode=args.mode, batch_size=args.batch_size, model="hf:bert",
                            hf_config=args.hf_config))
    assert prepared.batch.lengths_list == tuple(lengths)
    fns = {"plain BertModel": plain, "padbench hf_sdpa": prepared.step}
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times = {k: [] for k in fns}
    threads = torch.get_num_threads()
    for _ in range(args.rounds):
        for name, fn in fns.items():
            m = tbench.Timer("fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=1.0)
            times[name].append(m.median)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:18s} median {v * 1e3:8.1f} ms, fastest {min(times[k]) * 1e3:8.1f} ms  "
              f"(rounds: {', '.join(f'{t * 1e3:.0f}' for t in times[k])})")
    ratio = med["padbench hf_sdpa"] / med["plain BertModel"]
    fastest = min(times["padbench hf_sdpa"]) / min(times["plain BertModel"])
    print(f"{args.dist} {args.mode}: padbench hf_sdpa / plain BertModel = {ratio:.3f} (medians), {fastest:.3f} "
          f"(fastest rounds); attention {prepared.encoder.config._attn_implementation} / "
          f"{model.config._attn_implementation}; threads {threads}, lengths {min(lengths)}..{max(lengths)}")


if __name__ == "__main__":
    main()
