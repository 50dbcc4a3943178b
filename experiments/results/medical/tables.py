"""The top-level README's tables of the current config's runs (`seed*_current_config/`), from their committed
`summary.json` and `evaluation.json`, with the pooled rows of `retrieval_bootstrap.json` and `ratio_bootstrap.json`
and the BLEU / ROUGE-L of `language_r2gen/results.json` (run those three scripts first when a run is added). They
stand in README.md between the two `MARKERS`.

    python experiments/results/medical/tables.py            # rewrites that block of README.md
    python experiments/results/medical/tables.py --check    # exits 1 if README.md's block is not what they give
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parents[2] / "README.md"
MARKERS = ("<!-- medical tables: python experiments/results/medical/tables.py -->", "<!-- end of medical tables -->")
STAGES = ("tokenizers and sequences", "findings judge", "pretrain", "finetune", "evaluation")


def row(*cells) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def interval(result: dict) -> str:
    """A bootstrap result's 95% interval as text: signed for a difference, plain for a ratio."""
    low, high = result["ci95"]
    return f"{low:+.3f} to {high:+.3f}" if "difference" in result else f"{low:.3f}-{high:.3f}"


def per_finding(scores: dict) -> dict:
    """{finding: F1} of a clinical-efficacy or judge block."""
    return {name: value["f1"] for name, value in scores["per_finding"].items()}


def run_label(folder: Path) -> str:
    """A run's label in the tables: its seed and what else its folder's name says (`seed0_retrained_current_config`:
    "0 retrained")."""
    return folder.name[len("seed"): -len("_current_config")].replace("_", " ")


def tables() -> str:
    """The README block: captions and the four tables (stages, image -> report, report -> image, per finding)."""
    folders = sorted(HERE.glob("seed*_current_config"), key=lambda p: (int(run_label(p).split()[0]), p.name))
    if not folders:
        raise SystemExit(f"no seed*_current_config folder under {HERE}")
    runs = {run_label(folder): (json.loads((folder / "summary.json").read_text()),
                            json.loads((folder / "evaluation.json").read_text())) for folder in folders}
    names = {run_label(folder): folder.name for folder in folders}
    language = json.loads((HERE / "language_r2gen" / "results.json").read_text())["runs"]
    if missing := [p.name for p in folders if p.name not in language]:
        raise SystemExit(f"language_r2gen/results.json lacks {missing}: run language_r2gen/recompute.py again")
    pooled_reading = json.loads((HERE / "retrieval_bootstrap.json").read_text())["pooled_current_config"]
    pooled_ratio = json.loads((HERE / "ratio_bootstrap.json").read_text())["pooled_current_config"]
    for pooled, script in ((pooled_reading, "retrieval_bootstrap.py"), (pooled_ratio, "ratio_bootstrap.py")):
        if sorted(pooled["folders"]) != sorted(p.name for p in folders):
            raise SystemExit(f"{script} pooled {pooled['folders']}, not {[p.name for p in folders]}: run it again")
    seeds, each = ", ".join(map(str, runs)), " / ".join(map(str, runs))
    lines = ["Stage times and what each stage reached:", ""]

    lines += [row("seed", *STAGES, "total", "VQ held-out PSNR", "judge macro-F1 on its held-out renders", "validation loss"),
              row(*["---"] * 10)]
    for seed, (summary, _) in runs.items():
        stages = summary["stage_seconds"]
        hours, minutes = divmod(round(sum(stages.values()) / 60), 60)
        lines.append(row(seed, *(f"{stages[s]:.0f} s" for s in STAGES), f"{hours} h {minutes:02d}",
                         f"{summary['image_tokenizer']['psnr_held_out']:.1f} dB",
                         f"{summary['judge']['held_out_macro_f1']:.3f}", f"{summary['finetune']['val_loss']:.3f}"))

    lines += ["", "Image -> report on the 397 held-out studies (CE: the labeler on the generated against the reference",
              'report; "stated findings": macro-F1 of the findings the model states from the image, before it writes;',
              '"first try": the first greedy report alone; "report after image": written after the image and the',
              "findings, unguided; BLEU and ROUGE-L with R2Gen's tokens and lengths, `language_r2gen/`; the",
              "baselines' figures per seed, separated by /):", "",
              row("image -> report, seed", "CE macro-F1", "retrieval (judge features)", "difference, 95% interval",
                  "resamples with the model ahead", "stated findings", "CE micro-F1 (retrieval)", "BLEU-1", "BLEU-4",
                  "ROUGE-L", "first try", "report after image"),
              row(*["---"] * 12)]
    for seed, (_, evaluation) in runs.items():
        reading = evaluation["image_to_report"]
        model, retrieval, versus = reading["model"], reading["retrieval"], reading["model_vs_retrieval"]
        lines.append(row(seed, f"{model['clinical_efficacy']['macro_f1']:.3f}",
                         f"{retrieval['clinical_efficacy']['macro_f1']:.3f}",
                         f"{versus['difference']:+.3f} ({interval(versus)})", f"{versus['fraction_a_ahead']:.0%}",
                         f"{reading['model_findings']['macro_f1']:.3f}",
                         f"{model['clinical_efficacy']['micro_f1']:.3f} ({retrieval['clinical_efficacy']['micro_f1']:.3f})",
                         *(f"{language[names[seed]]['model']['r2gen'][m]:.3f}" for m in ("bleu_1", "bleu_4", "rouge_l")),
                         f"{reading['model_one_candidate']['clinical_efficacy']['macro_f1']:.3f}",
                         f"{reading['model_report_from_image']['clinical_efficacy']['macro_f1']:.3f}"))
    lines.append(row(f"**pooled, seeds {seeds}**", "", "",
                     f"**{pooled_reading['difference']:+.3f}** ({interval(pooled_reading)})",
                     f"{pooled_reading['fraction_a_ahead']:.0%}", *[""] * 7))
    for label, key in ((f"retrieval (VQ latents), seed {each}", "retrieval_vq_features"),
                       (f"most common report, seed {each}", "most_common")):
        scores = [evaluation["image_to_report"][key] for _, evaluation in runs.values()]
        words = [language[names[seed]][key]["r2gen"] for seed in runs]
        lines.append(row(label, " / ".join(f"{s['clinical_efficacy']['macro_f1']:.3f}" for s in scores), "", "", "", "",
                         " / ".join(f"{s['clinical_efficacy']['micro_f1']:.3f}" for s in scores),
                         *(" / ".join(f"{w[metric]:.3f}" for w in words) for metric in ("bleu_1", "bleu_4", "rouge_l")),
                         "", ""))
    r2gen = next(iter(runs.values()))[0]["goals"]["r2gen_iu_xray_reference"]
    lines.append(row("R2Gen on real IU X-ray images", *[""] * 6,
                     *(f"{r2gen[key]:.3f}" for key in ("bleu_1", "bleu_4", "rouge_l")), "", ""))

    lines += ["", "Report -> image (the judge's findings on the drawn image against the report's labels; the ratio is",
              "that macro-F1 over the judge's own on the reference renders of the same 397 studies; FID on the",
              "judge's 1024-d features):", "",
              row("report -> image, seed", "judge macro-F1", "judge macro-F1 on the reference renders",
                  "ratio, 95% interval", "resamples >= 0.7", "first draw", "judge micro-F1", "FID", "mean image's FID",
                  "SSIM"),
              row(*["---"] * 10)]
    for seed, (_, evaluation) in runs.items():
        drawing = evaluation["report_to_image"]
        model, ratio = drawing["model"], drawing["judge_f1_ratio_bootstrap"]
        lines.append(row(seed, f"{model['judge']['macro_f1']:.3f}", f"{drawing['reference']['judge']['macro_f1']:.3f}",
                         f"{ratio['ratio']:.3f} ({interval(ratio)})", f"{ratio['fraction_at_goal']:.0%}",
                         f"{drawing['model_first_draw']['judge']['macro_f1']:.3f}", f"{model['judge']['micro_f1']:.3f}",
                         f"{model['fid']:.1f}", f"{drawing['mean_image']['fid']:.1f}", f"{model['ssim']:.3f}"))
        if "draw_streams" in drawing:  # drawn again from more random streams: their mean ratio and its interval
            streams = drawing["draw_streams"]
            lines.append(row(f"{seed}, mean over its {len(streams['streams'])} draw streams", "", "",
                             f"{streams['judge_f1_ratio_mean']:.3f} ({interval(streams['judge_f1_ratio_bootstrap'])})",
                             f"{streams['judge_f1_ratio_bootstrap']['fraction_at_goal']:.0%}", *[""] * 5))
    lines.append(row(f"**pooled, seeds {seeds}**", "", "", f"**{pooled_ratio['ratio']:.3f}** ({interval(pooled_ratio)})",
                     f"{pooled_ratio['fraction_at_goal']:.0%}", *[""] * 5))

    lines += ["", "Per finding (F1; the held-out split has 1 pneumothorax, 9 edema and 10 fracture studies, so one study",
              "moves a rare finding's F1 a lot and the macro mean by up to 0.09):", "",
              row(f"F1 per finding, seed {each}", "reports (CE)", "retrieval's reports (judge features)",
                  "drawn images (judge)", "reference renders (judge)"),
              row(*["---"] * 5)]
    blocks = [(e["image_to_report"]["model"]["clinical_efficacy"], e["image_to_report"]["retrieval"]["clinical_efficacy"],
               e["report_to_image"]["model"]["judge"], e["report_to_image"]["reference"]["judge"])
              for _, e in runs.values()]
    for name in per_finding(blocks[0][0]):
        cells = [" / ".join(f"{per_finding(run[i]).get(name, float('nan')):.2f}" for run in blocks) for i in range(4)]
        lines.append(row(name.replace("nodule_mass", "nodule/mass").replace("_", " "), *cells))
    return "\n".join(lines)


def readme_block(text: str) -> tuple[int, int]:
    """Where the tables stand in the README's `text`: the start and end offsets between the `MARKERS`."""
    start, end = text.find(MARKERS[0]), text.find(MARKERS[1])
    if start < 0 or end < start:
        raise SystemExit(f"{README}: expected the lines {MARKERS[0]} and {MARKERS[1]} around the medical tables")
    return start + len(MARKERS[0]), end


if __name__ == "__main__":
    text = README.read_text()
    start, end = readme_block(text)
    block = f"\n{tables()}\n"
    if "--check" in sys.argv[1:]:
        sys.exit(0 if text[start:end] == block else f"{README}'s medical tables are stale: run {__file__}")
    README.write_text(text[:start] + block + text[end:])
    print(f"{README}: medical tables written for the runs in {HERE}")
