"""Writing an evaluation: report.json, report.md (the paper's table shape), PNG plots and sample strips."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_paths

COLUMNS = (("ssim", "SSIM ↑"), ("lpips", "LPIPS ↓"), ("csim", "CSIM ↑"), ("akd", "AKD ↓"))
# the mouth region over the test frames whose mouth is open (metrics.mouth_region_metrics)
MOUTH_COLUMNS = (("mouth_lpips", "mouth LPIPS ↓"), ("mouth_ssim", "mouth SSIM ↑"))
MOUTH_HEADER = " | ".join(c for _, c in MOUTH_COLUMNS) + " | mouth-open frames"
MOUTH_TEXT = "Mouth columns: not measured when this report was made (n/a)."  # for reports from before them


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def strip(panels, height: int | None = None) -> np.ndarray:
    """Side-by-side uint8 RGB panels, each resized to ``height`` (default: the first panel's)."""
    import cv2

    h = height or panels[0].shape[0]
    out = []
    for p in panels:
        if p.shape[0] != h:
            p = cv2.resize(p, (max(1, round(p.shape[1] * h / p.shape[0])), h), interpolation=cv2.INTER_AREA)
        out.append(p)
    return np.concatenate(out, axis=1)


def _ft_line(opts: dict[str, Any]) -> list[str]:
    """How FT was run, when it was."""
    if "ft" not in opts.get("modes", []):
        return []
    weights = opts.get("ft_loss_weights")
    if isinstance(weights, dict):
        weights = ", ".join(f"{k} {v:g}" for k, v in sorted(weights.items()) if v)
    lr = opts.get("ft_lr")
    return [f"FT: {opts.get('ft_steps')} steps on the shots"
            + (", all run (no early stop)" if opts.get("ft_early_stop") is False else "")
            + (f", lr {lr:g} for G' and {4 * lr:g} for D'" if lr else "")
            + (f", loss weights: {weights}" if weights else "") + ".", ""]


def _mouth_cells(row: dict[str, Any]) -> str:
    """Mouth LPIPS, SSIM and the open-mouth frame count of a row (n/a in reports from before them)."""
    n = row.get("mouth_open_frames")
    return " | ".join(_fmt(row.get(k)) for k, _ in MOUTH_COLUMNS) + f" | {'n/a' if n is None else n}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: protocol, backbones, the method x shots table, per-clip rows."""
    b = report["backbones"]
    lines = [f"# Evaluation of `{report['model']}` ({report['image_size']} px)", "",
             f"**Protocol: {report['protocol']}.** {report['protocol_text']}", "",
             *_ft_line(report.get("options", {})),
             "Backbones: " + "; ".join(f"{k.upper()}: {v}" for k, v in b.items()) + ".",
             "AKD is the mean landmark distance over the inter-ocular distance of the real crop; frames where "
             "no face was found on either side are left out and their share is given. CSIM uses dlib's 128-d "
             "descriptor, so its values are not comparable with ArcFace-based numbers in papers.",
             report.get("mouth_region", {}).get("text", MOUTH_TEXT), "",
             "| method | shots | " + " | ".join(c for _, c in COLUMNS) + " | FID ↓ | AKD no face | "
             + MOUTH_HEADER + " |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2 + len(MOUTH_COLUMNS) + 1)]
    fid_na = "n/a" if b.get("fid", "").startswith("not available") else None
    for r in report["results"]:
        cells = [_fmt(r[k]) for k, _ in COLUMNS]
        lines.append(f"| {r['label']} | {r['shots']} | " + " | ".join(cells)
                     + f" | {fid_na or _fmt(r['fid'], 1)} | {r['akd_no_face_share']:.0%} | "
                     + _mouth_cells(r) + " |")
    lines += ["", "## Per clip", "",
              "| clip | method | shots | " + " | ".join(c for _, c in COLUMNS) + " | frames | "
              + MOUTH_HEADER + " |",
              "|---|---|---|" + "---|" * (len(COLUMNS) + 1 + len(MOUTH_COLUMNS) + 1)]
    for r in report["results"]:
        for c in r["per_clip"]:
            lines.append(f"| {c['video']} | {r['label']} | {r['shots']} | "
                         + " | ".join(_fmt(c[k]) for k, _ in COLUMNS) + f" | {c['frames']} | "
                         + _mouth_cells(c) + " |")
    lines += ["", "## Clips", ""]
    for c in report["clips"]:
        lines.append(f"- `{c['name']}`: {c['num_frames']} frames at {c['fps']:g} fps; test frames "
                     f"{c['test_frames'][0]}..{c['test_frames'][-1]} ({len(c['test_frames'])}, "
                     f"{c['test_frames_without_face']} without a face left out)")
    ci = report.get("cross_identity")
    if ci:
        lines += ["", "## Cross-identity", "", f"{ci['protocol']}. Identity kept: CSIM to the source photo "
                  f"({ci['backbones']['csim_to_source']}); motion followed: landmarks detected on the output "
                  f"({ci['backbones']['motion']}) against the driver's, normalised for face position and size.", "",
                  "| source | driver | mode | CSIM to source ↑ | relative motion distance ↓ | mouth corr ↑ | eye corr ↑ | no face |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in ci["rows"]:
            lines.append(f"| {Path(r['source']).name} | {r['video']} | {r['mode'].upper()} | {_fmt(r['csim_to_source'])} | "
                         f"{_fmt(r['relative_motion_distance'])} | {_fmt(r['mouth_opening_correlation'])} | "
                         f"{_fmt(r['eye_opening_correlation'])} | {r['no_face_share']:.0%} |")
    files = report.get("files", {})
    if files:
        lines += ["", "## Figures", ""] + [f"- [{Path(p).name}]({p})" for p in files.get("plots", [])]
        n_cross = sum(1 for p in files.get("samples", []) if Path(p).name.startswith("cross_"))
        lines.append(f"- {len(files.get('samples', [])) - n_cross} self-reenactment strips in `samples/` "
                     "(real | generated | landmark image, one row per test frame)")
        if n_cross:
            lines.append(f"- {n_cross} cross-identity strips `samples/cross_*` (driving frame | generated | source crop)")
    lines += ["", f"Evaluated in {report.get('seconds', '?')} s."]
    return "\n".join(lines) + "\n"


def _save_fig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """``metrics_vs_shots.png`` and ``per_clip.png`` (matplotlib Agg, no display needed)."""
    from ..deps import require

    require("matplotlib.figure", "Plotting the report", import_it=True)  # one line, not a traceback
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, safe in any backend

    methods = list(dict.fromkeys(r["method"] for r in report["results"]))
    label = {r["method"]: r["label"] for r in report["results"]}
    # the mouth region's LPIPS beside the full frame's (reports from before it have no such rows)
    columns = list(COLUMNS) + [c for c in MOUTH_COLUMNS[:1]
                               if any(r.get(c[0]) is not None for r in report["results"])]
    backbone = dict(report["backbones"], mouth_lpips=report["backbones"].get("lpips", ""))
    fig = Figure(figsize=(4 * len(columns), 3.4))
    for k, (key, title) in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), k + 1)
        for m in methods:
            rs = [r for r in report["results"] if r["method"] == m]
            ax.plot([r["shots"] for r in rs], [np.nan if r.get(key) is None else r[key] for r in rs], "o-", label=label[m])
        ax.set_xscale("log", base=2)
        shots = sorted({r["shots"] for r in report["results"]})
        ax.set_xticks(shots, [str(t) for t in shots])
        ax.set_xlabel("few-shot frames T")
        ax.set_title(f"{title} ({backbone[key]})", fontsize=8)
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['model']}: {report['protocol']}", fontsize=9)
    paths = [out_dir / "metrics_vs_shots.png"]
    _save_fig(fig, paths[0])

    fig = Figure(figsize=(4 * len(COLUMNS), 3.4))
    groups = [(r["method"], r["shots"]) for r in report["results"]]
    for k, (key, title) in enumerate(COLUMNS):
        ax = fig.add_subplot(1, len(COLUMNS), k + 1)
        for j, r in enumerate(report["results"]):
            ys = [c[key] for c in r["per_clip"] if c[key] is not None]
            ax.scatter([j] * len(ys), ys, s=12)
            if ys:
                ax.hlines(np.mean(ys), j - 0.3, j + 0.3, color="k", lw=1)
        ax.set_xticks(range(len(groups)), [f"{m} T={t}" for m, t in groups], rotation=70, fontsize=6)
        ax.set_title(f"{title} per clip", fontsize=8)
    paths.append(out_dir / "per_clip.png")
    _save_fig(fig, paths[1])
    return [p.name for p in paths]


def write_report(result, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, plots and ``samples/*.png`` into ``out_dir``; returns the report."""
    from ..io import check_output_folder
    from ..pipeline import write_image

    out = check_output_folder(out_dir, f"Cannot write the report to {out_dir}", "choose another folder")
    report = dict(result.report)
    samples = []
    for name, rows in result.samples.items():
        img = np.concatenate([strip(list(r)) for r in rows], axis=0) if len(rows) > 1 else strip(list(rows[0]))
        rel = f"samples/{name}.png"
        write_image(out / rel, img, model_name=report["model"])
        samples.append(rel)
    report["files"] = {"json": "report.json", "markdown": "report.md", "plots": plots(report, out), "samples": samples}
    # last, and the two together: an earlier report.json/.md pair stays until both new ones are whole
    with atomic_paths([out / "report.json", out / "report.md"], name=out) as (js, md):
        js.write_text(json.dumps(report, indent=1, default=_json_default) + "\n", encoding="utf-8")
        md.write_text(markdown(report), encoding="utf-8")
    return report


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
