"""Figures and examples of a medical evaluation: image grids with their reports, reports side by side, and the
fine-tuning's validation curves (loss and monitors)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .dataset import study_findings
from .findings import named

__all__ = ["plot_validation_curves", "write_samples"]


def write_samples(keep: dict, directory, count: int = 8, quote_reports: bool = False) -> dict:
    """From `evaluate_medical(..., keep=...)`: write `report_to_image.png` (per study: reference image,
    generated image, mean-image baseline, under the report), `image_to_report.md` (generated, retrieved
    and reference reports of the first `count` studies) and `examples.json` (all, with the judge's findings on
    the drawn and on the reference image, and on the image drawn in each random stream where there were several,
    `judged_findings_streams`). Returns the paths.

    quote_reports: write the reference and retrieved reports' text. Off by default: Open-i (CC BY-NC-ND)
    and MIMIC-CXR (PhysioNet licence) reports may not be redistributed, so samples name those studies by
    id and findings; the generated reports are always written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def cite(study) -> str:
        findings = ", ".join(study_findings(study)) or "no finding"
        return study.report if quote_reports else f"study {study.study_id} (findings: {findings})"

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    studies = keep["references"]
    count = min(count, len(studies))
    rows = [("reference", keep["reference_images"]), ("generated", keep["drawn"]), ("mean image", keep["mean_images"])]
    figure, axes = plt.subplots(len(rows), count, figsize=(2.2 * count, 2.4 * len(rows) + 1.6), squeeze=False)
    for column in range(count):
        for row, (name, images) in enumerate(rows):
            axis = axes[row][column]
            axis.imshow(images[column, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(name)
        axes[-1][column].set_xlabel(textwrap.fill(cite(studies[column])[:140], 28), fontsize=6)
    figure.suptitle("report -> image (held-out reports)")
    figure.tight_layout()
    grid = directory / "report_to_image.png"
    figure.savefig(grid, dpi=110)
    plt.close(figure)

    lines = ["# image -> report on held-out studies", ""]
    if not quote_reports:
        lines += ["Reference and retrieved reports are named by study, not quoted (their licences forbid "
                  "redistribution).", ""]
    for i in range(count):
        lines += [f"## {studies[i].study_id}", "", f"- **reference**: {cite(studies[i])}",
                  f"- **generated**: {keep['generated'][i]}",
                  f"- **findings the model stated first**: {', '.join(keep['stated'][i]) or 'none'}",
                  f"- **retrieval (judge features)**: {cite(keep['retrieved'][i])}",
                  f"- **retrieval (VQ latents)**: {cite(keep['retrieved_vq'][i])}", ""]
    reports = directory / "image_to_report.md"
    reports.write_text("\n".join(lines))
    examples = directory / "examples.json"
    streams = keep["judged_streams"]  # (R, N, F): stream 0 is `judged`
    examples.write_text(json.dumps([{"study": study.study_id, "reference": cite(study), "generated": keep["generated"][i],
                                     "stated_findings": list(keep["stated"][i]), "retrieved": cite(keep["retrieved"][i]),
                                     "retrieved_vq_latents": cite(keep["retrieved_vq"][i]),
                                     # the judge's findings on the drawn image and on the reference image
                                     "judged_findings": named(keep["judged"][i]),
                                     "judged_reference_findings": named(keep["judged_reference"][i]),
                                     # with more than one random stream (draw_streams): the drawn image's of each
                                     **({"judged_findings_streams": [named(chosen[i]) for chosen in streams]}
                                        if len(streams) > 1 else {})}
                                    for i, study in enumerate(studies)], indent=1))
    return {"report_to_image": str(grid), "image_to_report": str(reports), "examples": str(examples)}


def plot_validation_curves(rows: list[dict], path) -> Path | None:
    """Plot metrics.jsonl rows of validation steps (`val_loss`, `monitor/draw_<finding>`, `monitor/read_auc_<finding>`,
    `monitor/read_ap_<finding>` from `domains/medical/monitor.py`) to `path` (PNG): validation loss, each finding's
    drawing gain (nats per image), its reading AUC and average precision against the step. None (nothing written)
    without rows."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]

    def keys(prefix: str) -> list[str]:
        return sorted({key for row in rows for key in row if key.startswith(prefix)})

    panels = [("validation loss", "", ["val_loss"]),
              ("drawing: log p(image | findings) - log p(image | without the finding), nats", "monitor/draw_",
               keys("monitor/draw_")),
              ("reading: ROC AUC of the finding's log-odds", "monitor/read_auc_", keys("monitor/read_auc")),
              ("reading: average precision of the finding's log-odds", "monitor/read_ap_", keys("monitor/read_ap"))]
    overall = {"val_loss": "validation loss", "monitor/draw_findings": "all findings vs <null>",
               "monitor/read_auc": "mean", "monitor/read_ap": "mean"}
    panels = [panel for panel in panels if panel[2]]  # e.g. runs logged before average precision was a monitor
    colours = plt.get_cmap("tab20").colors
    figure, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.8), squeeze=False)
    for axis, (title, prefix, keys) in zip(axes[0], panels):
        for i, key in enumerate(keys):
            name = overall.get(key) or key.removeprefix(prefix)
            axis.plot(steps, [row.get(key) for row in rows], label=name, color="black" if key in overall else colours[i],
                      linewidth=2.5 if key in overall else 1.2)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("fine-tuning step")
        if len(keys) > 1:
            axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
