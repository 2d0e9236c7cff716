"""`transferkit predict` and `transferkit export`: parse, call `transferkit.export`, print."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.catalog import BACKENDS, BACKENDS_HELP
from transferkit.cli.tables import common_folder, from_folder

if TYPE_CHECKING:
    from transferkit.export.formats import ExportReport, QuantizationReport
    from transferkit.export.predictor import FilePrediction, Prediction

console = Console(stderr=True)  # progress, summaries and errors
stdout = Console()  # what a command is asked for: the predictions table

OUTPUT_FORMATS = ("table", "csv", "json")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `predict` and `export` subcommands to the `transferkit` parser."""
    predict = commands.add_parser(
        "predict",
        help="classify images with a fine-tuned model",
        description="Prints the most probable labels of each image, and of each other label the model "
        "predicts (a run fitted with --aux-label). Unreadable files are listed with their error and "
        "skipped; the exit code is 0 when at least one image was classified.",
    )
    predict.add_argument("model", metavar="MODEL", help="run directory or bundle folder")
    predict.add_argument(
        "inputs",
        metavar="PATH",
        nargs="+",
        help="image files, folders (searched recursively), glob patterns or .csv/.jsonl manifests",
    )
    predict.add_argument(
        "--top-k", type=positive_int, default=1, help="labels per image, most probable first"
    )
    predict.add_argument("--format", choices=OUTPUT_FORMATS, default="table", help="output on stdout")
    predict.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help=BACKENDS_HELP,
    )
    predict.add_argument("--batch-size", type=positive_int, default=32)
    export = commands.add_parser(
        "export",
        help="export a fine-tuned model as ONNX (checked against PyTorch), or copy its bundle",
        description="--format onnx writes model.onnx (uint8 pixels after resize and crop in, logits out; "
        "normalization inside; labels and preprocessing in its metadata) into the bundle or --out, and "
        "fails unless onnxruntime's probabilities are within 1e-4 of PyTorch's on the run's test images.",
    )
    export.add_argument("source", metavar="RUN_OR_BUNDLE", help="run directory or bundle folder")
    export.add_argument("--out", help="folder for a complete copy of the bundle (default: the bundle itself)")
    export.add_argument("--format", default="onnx", help="a registered export format: onnx, safetensors")
    export.add_argument(
        "--quantize", choices=("int8",), help="also write model.int8.onnx (onnxruntime dynamic quantization)"
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run_predict(args: argparse.Namespace) -> int:
    from transferkit.export.predictor import list_image_files, load

    classifier = load(args.model, backend=args.backend)
    paths = list_image_files(args.inputs)
    results = classifier.predict_files(paths, top_k=args.top_k, batch_size=args.batch_size)
    print_predictions(results, args.format, args.top_k, [other.name for other in classifier.other_labels])
    predicted = sum(result.prediction is not None for result in results)
    if predicted < len(results):
        console.print(f"{len(results) - predicted} of {len(results)} files could not be read (see error)")
    if not predicted:
        console.print("[bold red]error:[/] no image could be classified.")
        return 1
    return 0


def print_predictions(
    results: Sequence[FilePrediction], output: str, top_k: int, other_labels: Sequence[str] = ()
) -> None:
    """The predictions in `output` format; `other_labels`, the names of the labels the model predicts
    beside its task's, each get their most probable class (all `top_k` in json)."""
    if output == "csv":
        write_csv(results, top_k, other_labels)
    elif output == "json":
        json.dump([prediction_record(result) for result in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        folder = common_folder([result.path for result in results])
        stdout.print(prediction_table(results, top_k, other_labels, folder))
        if folder:  # the rows name each image from there; unbroken, to copy whole
            stdout.print(f"images in {escape(folder)}", soft_wrap=True, highlight=False)


def prediction_record(result: FilePrediction) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": result.path,
        "predictions": ranked_labels(result.prediction),
        "error": result.error,
    }
    if result.other_labels:
        record["other_labels"] = {name: ranked_labels(p) for name, p in result.other_labels.items()}
    return record


def ranked_labels(prediction: Prediction | None) -> list[dict[str, Any]]:
    if prediction is None:
        return []
    return [
        {"label": label, "probability": probability}
        for label, probability in zip(prediction.labels, prediction.probabilities, strict=True)
    ]


def csv_header(top_k: int, other_labels: Sequence[str] = ()) -> list[str]:
    """path, label, probability, then label_2, probability_2 ... for --top-k, then each other label and
    its probability (NAME, NAME_probability), then error."""
    ranked = [name for rank in range(2, top_k + 1) for name in (f"label_{rank}", f"probability_{rank}")]
    others = [column for name in other_labels for column in (name, f"{name}_probability")]
    return ["path", "label", "probability", *ranked, *others, "error"]


def write_csv(results: Sequence[FilePrediction], top_k: int, other_labels: Sequence[str] = ()) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(csv_header(top_k, other_labels))
    for result in results:
        cells: list[str] = []
        if result.prediction is not None:
            for label, probability in zip(
                result.prediction.labels, result.prediction.probabilities, strict=True
            ):
                cells += [label, f"{probability:.6f}"]
        cells += [""] * (2 * top_k - len(cells))
        for name in other_labels:
            other = result.other_labels.get(name)
            cells += [other.label, f"{other.probability:.6f}"] if other else ["", ""]
        writer.writerow([result.path, *cells, result.error or ""])


def prediction_table(
    results: Sequence[FilePrediction], top_k: int, other_labels: Sequence[str] = (), folder: str = ""
) -> Table:
    """One row per file, its path from `folder` (the whole path without one)."""
    table = Table(title=f"predictions ({top_k} most probable labels)" if top_k > 1 else "predictions")
    table.add_column("image", overflow="fold")
    table.add_column("label" if top_k == 1 else "labels", overflow="fold")
    table.add_column("probability", justify="right")
    for name in other_labels:
        table.add_column(escape(name), overflow="fold")
    for result in results:
        if result.prediction is None:
            error = f"[red]error: {escape(result.error or '')}[/]"
            table.add_row(escape(from_folder(result.path, folder)), error, "", *([""] * len(other_labels)))
            continue
        labels = "\n".join(escape(label) for label in result.prediction.labels)
        probabilities = "\n".join(f"{100 * p:.1f} %" for p in result.prediction.probabilities)
        others = [
            f"{escape(other.label)} ({100 * other.probability:.1f} %)" if other else ""
            for other in (result.other_labels.get(name) for name in other_labels)
        ]
        table.add_row(escape(from_folder(result.path, folder)), labels, probabilities, *others)
    return table


def run_export(args: argparse.Namespace) -> int:
    from transferkit.export import export_model

    report = export_model(args.source, out=args.out, format=args.format, quantize=args.quantize)
    print_export(report)
    return 0


def print_export(report: ExportReport) -> None:
    for path in report.files:
        print(f"wrote {path}")
    if report.parity is not None:
        parity = report.parity
        batches = " and ".join(str(size) for size in parity.batch_sizes)
        print(
            f"onnxruntime vs PyTorch: largest probability difference {parity.max_abs_difference:.2e} "
            f"on {parity.description}, batches of {batches}"
        )
    if report.quantization is not None:
        print(quantization_summary(report.quantization))


def quantization_summary(report: QuantizationReport) -> str:
    sizes = f"{report.int8_bytes / 1e6:.2f} MB vs {report.float_bytes / 1e6:.2f} MB"
    line = (
        f"int8: {report.path.name}, {sizes}; same top label as float on {100 * report.agreement:.1f} % "
        f"of images, largest probability difference {report.max_abs_difference:.2e}"
    )
    if report.float_accuracy is not None and report.int8_accuracy is not None:
        change = 100 * (report.int8_accuracy - report.float_accuracy)
        line += (
            f"; test accuracy {100 * report.float_accuracy:.2f} % -> {100 * report.int8_accuracy:.2f} % "
            f"({change:+.2f} points)"
        )
    return line
