"""Does a meta-learning run tell people apart? A sample grid across identities, plus numbers.

Rows: training clips of different identities. Columns: target landmark image | real target frame |
fake from the row's own K shots (EMA generator) | fake from the *next* row's shots with this row's
landmarks. If the embedder and AdaIN carry identity, column 3 looks like column 2's person and column 4
like the next row's; a collapsed embedder gives the same face in every row.

Prints (and writes as JSON next to the PNG): the mean pairwise cosine of the rows' e_hat, the
generator's per-row content distance (ST-LPIPS) to the real frame with the row's own e_hat and with
the next row's, and how often its own e_hat is the closer one.

    python scripts/identity_grid.py --run runs/default-cpu256-v2 --data cache/train -o runs/identity.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder with checkpoint.pt and training_options.json")
    p.add_argument("--data", default="cache/train")
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", required=True, help="PNG path")
    args = p.parse_args()

    import numpy as np
    import torch

    from talkinghead.data import EpisodeDataset
    from talkinghead.metrics import lpips
    from talkinghead.pipeline import to_uint8, write_image
    from talkinghead.training import load_run_model

    torch.set_num_threads(1)
    run = Path(args.run)
    opts = json.loads((run / "training_options.json").read_text())
    model, step = load_run_model(run)  # EMA generator, as exported
    model.eval()

    ds = EpisodeDataset(args.data, k=args.k, augment=False)
    # one clip per identity, spread over the table, so neighbouring rows are different people
    seen, picks = set(), []
    for i in np.random.default_rng(args.seed).permutation(len(ds)):
        if ds.identities[i] not in seen:
            seen.add(ds.identities[i])
            picks.append(int(i))
        if len(picks) == args.rows:
            break
    eps = [ds[(i, (args.seed, i))] for i in picks]
    xs = torch.stack([e["frames"][: args.k] for e in eps])
    ys = torch.stack([e["landmarks"][: args.k] for e in eps])
    xt = torch.stack([e["frames"][args.k] for e in eps])
    yt = torch.stack([e["landmarks"][args.k] for e in eps])
    ps = torch.stack([e["points"][: args.k] for e in eps])
    pt = torch.stack([e["points"][args.k] for e in eps])
    G = model.generator
    with torch.no_grad():
        _, e_hat = model.embedder(xs, ys)
        # the next row's identity: its e_hat and, for a family that warps the shots, its shots
        own = G.generate(yt, pt, G.identity_state(e_hat, xs, ps))["fake"]
        other = G.generate(yt, pt, G.identity_state(e_hat.roll(-1, 0), xs.roll(-1, 0), ps.roll(-1, 0)))["fake"]
    d_own = torch.tensor(lpips(own, xt, net="st-lpips-vgg16").per_item)
    d_other = torch.tensor(lpips(other, xt, net="st-lpips-vgg16").per_item)
    en = torch.nn.functional.normalize(e_hat, dim=1)
    cos = en @ en.T
    off = cos[~torch.eye(len(picks), dtype=torch.bool)]
    tiles = torch.cat([yt, xt, own, other], dim=3)
    grid = to_uint8(torch.cat(list(tiles), dim=1)[None])[0]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, grid, model_name=opts.get("config_name", "run"))
    stats = {
        "step": step,
        "videos": [ds.videos[i] for i in picks],
        "identities": [ds.identities[i] for i in picks],
        "e_hat_norm": [round(float(v), 3) for v in e_hat.norm(dim=1)],
        "e_hat_pairwise_cosine_mean": round(float(off.mean()), 4),
        "e_hat_pairwise_cosine_min": round(float(off.min()), 4),
        "content_own_e_hat": [round(float(v), 4) for v in d_own.flatten()],
        "content_next_rows_e_hat": [round(float(v), 4) for v in d_other.flatten()],
        "own_e_hat_closer": f"{int((d_own.flatten() < d_other.flatten()).sum())}/{len(picks)}",
    }
    out.with_suffix(".json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
