"""``rrm-ui db``, ``rrm-ui import`` and ``rrm-ui export``: the database, data in, training data out."""

from __future__ import annotations

import argparse
import sys

from rrm_ui.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().but(database_url=args.db)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from rrm_ui.io.importers import FORMATS as IMPORT_FORMATS
    from rrm_ui.io.importers import GOLD_RULES, PRESETS
    from rrm_ui.services.exports import FILL_FROM
    from rrm_ui.services.exports import FORMATS as EXPORT_FORMATS

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations (also done automatically at start)")
    up.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    up.set_defaults(handler=db_upgrade)

    formats = "\n".join(f"  {k:20} {v}" for k, v in IMPORT_FORMATS.items())
    presets = "\n".join(f"  {k}" for k in PRESETS)
    gold_rules = "\n".join(f"  {k:20} {v}" for k, v in GOLD_RULES.items())
    imp = sub.add_parser(
        "import",
        help="import a data set (JSONL, JSON, CSV, Parquet; gzip too)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"formats detected by their fields:\n{formats}\n\npresets (--preset):\n{presets}\n\n"
        f"gold from the structure (--gold, with --map):\n{gold_rules}\n\n{IMPORT_EXAMPLES}",
    )
    imp.add_argument("file")
    imp.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    imp.add_argument("--name", help="data set name (default: the file name)")
    imp.add_argument("--preset", choices=sorted(PRESETS), help="a named field mapping for a known public data set")
    imp.add_argument("--map", action="append", default=[], metavar="KEY=FIELDS", help="explicit field mapping")
    imp.add_argument("--labels", metavar="CODE=CHOICE,...", help="what each label value means: A, B, tie, both_bad")
    imp.add_argument("--annotator-column", action="append", default=[], metavar="COLUMN=NAME",
                     help="a column of human labels, stored as labels by annotator NAME")  # fmt: skip
    imp.add_argument("--annotator-labels", metavar="CODE=CHOICE,...", help="codes used in the annotator columns")
    imp.add_argument("--external", metavar="FILE", help="another judge's verdicts, joined on the item id")
    imp.add_argument("--external-run", help="name of the external judge's run")
    imp.add_argument("--external-id", default="id", help="id field of the verdict file (default id)")
    imp.add_argument("--external-verdict", default="verdict", help="verdict field of the verdict file")
    imp.add_argument("--external-labels", metavar="CODE=CHOICE,...", help="codes used in the verdict field")
    imp.add_argument("--max-mb", type=float, default=512, help="refuse files larger than this (default 512 MB)")
    imp.add_argument("--shuffle-seed", type=int, default=0,
                     help="chosen/rejected data: seed of the presentation-order shuffle")  # fmt: skip
    imp.add_argument("--gold", choices=sorted(GOLD_RULES), help="with --map: gold from the order of the responses")
    _skip_options(imp)
    imp.set_defaults(handler=import_command)

    lab = sub.add_parser("labels", help="attach human labels to a stored data set")
    lab_sub = lab.add_subparsers(dest="labels_command", required=True)
    li = lab_sub.add_parser(
        "import",
        help="append the human labels of a file to a stored data set (all or nothing)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=LABELS_EXAMPLES,
    )
    li.add_argument("file")
    li.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    li.add_argument("--dataset", required=True, help="the stored data set the labels are about")
    li.add_argument("--id-field", default="id", help="field of the file holding the item id (default id)")
    li.add_argument("--annotator-column", action="append", default=[], metavar="COLUMN=NAME",
                    help="wide form: a column of labels by annotator NAME (repeat per annotator)")  # fmt: skip
    li.add_argument("--annotator-field", help="long form: the field naming each row's annotator")
    li.add_argument("--label-field", help="long form: the field holding each row's label")
    li.add_argument("--note-field", help="a field with the annotator's note (optional)")
    li.add_argument("--pair-fields", metavar="I_FIELD,J_FIELD",
                    help="list items: the fields with the two responses' 0-based indices (A: the first)")  # fmt: skip
    li.add_argument("--labels", required=True, metavar="CODE=CHOICE,...",
                    help="what each label code means: A, B, tie, both_bad (never guessed)")  # fmt: skip
    li.add_argument("--max-mb", type=float, default=512, help="refuse files larger than this (default 512 MB)")
    _skip_options(li)
    li.set_defaults(handler=labels_import_command)

    ver = sub.add_parser("verdicts", help="attach another judge's verdicts to a stored data set")
    ver_sub = ver.add_subparsers(dest="verdicts_command", required=True)
    vi = ver_sub.add_parser(
        "import",
        help="store another judge's verdicts on a stored data set as a new external run (all or nothing)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=VERDICTS_EXAMPLES,
    )
    vi.add_argument("file")
    vi.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    vi.add_argument("--dataset", required=True, help="the stored data set the verdicts are about")
    vi.add_argument("--run", required=True, help="name of the external judge's run (new on the data set)")
    vi.add_argument("--id-field", default="id", help="field of the file holding the item id (default id)")
    vi.add_argument("--verdict-field", default="verdict", help="field holding the verdict (default verdict)")
    vi.add_argument("--ranking-field", help="list items: the field holding the judge's ranking (indices, best first)")
    vi.add_argument("--labels", required=True, metavar="CODE=CHOICE,...",
                    help="what each verdict code means: A, B, tie, or none (the judge gave no verdict)")  # fmt: skip
    vi.add_argument("--max-mb", type=float, default=512, help="refuse files larger than this (default 512 MB)")
    _skip_options(vi)
    vi.set_defaults(handler=verdicts_import_command)

    exp = sub.add_parser(
        "export",
        help="export human-corrected labels or a full dump",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="formats:\n" + "\n".join(f"  {k:20} {v}" for k, v in EXPORT_FORMATS.items()),
    )
    exp.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    exp.add_argument("--dataset", required=True)
    exp.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    exp.add_argument("--out", required=True)
    exp.add_argument(
        "--run",
        help="the model run whose verdicts fill in where no human labelled (default: the data set's main run, "
        "the judge run with the most items judged, newest among equals; never an Explorer re-judge)",
    )
    exp.add_argument("--annotator", help="only this annotator's labels")
    exp.add_argument("--only-corrected", action="store_true", help="only pairs where a human overrode the model")
    exp.add_argument(
        "--only-disagreements",
        action="store_true",
        help="only pairs with a disagreement (human/model, between humans, order flips, split votes)",
    )
    exp.add_argument("--with-reasoning", action="store_true",
                     help="rrm format: add the model's trace where a human agreed with it")  # fmt: skip
    exp.add_argument("--fill-from", choices=list(FILL_FROM), default="model",
                     help="what decides pairs no reviewer adjudicated and no human labelled: "
                     + "; ".join(f"{k}: {v}" for k, v in FILL_FROM.items()) + " (default model)")  # fmt: skip
    exp.set_defaults(handler=export_command)

    dsets = sub.add_parser("datasets", help="a stored data set's labelling guidelines and settings")
    dsets_sub = dsets.add_subparsers(dest="datasets_command", required=True)
    gl = dsets_sub.add_parser("guidelines", help="save a new version of a data set's labelling guidelines "
                              "(Markdown), shown beside every item in the Annotate tab")  # fmt: skip
    gl.add_argument("name", help="the data set")
    gl.add_argument("file", help="a Markdown file ('-': stdin)")
    gl.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    gl.set_defaults(handler=guidelines_command)
    cr = dsets_sub.add_parser("criteria", help="name the criteria labelled apart from the overall choice "
                              "(A / B / tie each, in the Annotate tab); none given: no criteria")  # fmt: skip
    cr.add_argument("name", help="the data set")
    cr.add_argument("criteria", nargs="*", help="e.g. helpfulness harmlessness")
    cr.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    cr.set_defaults(handler=criteria_command)
    bl = dsets_sub.add_parser("blind", help="annotators blind to each other's labels and notes until adjudicated")
    bl.add_argument("name", help="the data set")
    bl.add_argument(
        "setting",
        choices=["on", "off", "auto"],
        help="auto: on when the app serves an item to more than one annotator (--overlap above 1)",
    )
    bl.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    bl.set_defaults(handler=blind_command)


def db_upgrade(args: argparse.Namespace) -> int:
    from rrm_ui.storage import make_engine, upgrade
    from rrm_ui.storage.db import current_revision

    engine = make_engine(_settings(args).database_url)
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}: {engine.url.render_as_string(hide_password=True)}")
    return 0


def import_command(args: argparse.Namespace) -> int:
    from rrm_ui.io.importers import PRESETS, ExternalVerdicts, ImportFileError, parse_label_values, parse_mapping
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import import_with_rejects
    from rrm_ui.storage import DatasetExists

    try:
        pairs = list(args.map) + ([f"gold={args.gold}"] if args.gold else [])
        if args.gold and not args.map:
            raise ValueError("--gold needs a field mapping (--map query=... --map responses=...)")
        mapping = PRESETS[args.preset] if args.preset else (parse_mapping(pairs, args.labels) if pairs else None)
        columns = dict(_pair(c, "--annotator-column") for c in args.annotator_column)
        external = None
        if args.external:
            if not (args.external_run and args.external_labels):
                raise ValueError("--external needs --external-run NAME and --external-labels CODES")
            external = ExternalVerdicts(args.external, args.external_run, args.external_id, args.external_verdict,
                                        parse_label_values(args.external_labels, verdicts=True))  # fmt: skip
        options = dict(
            name=args.name,
            mapping=mapping,
            annotator_columns=columns or None,
            annotator_labels=parse_label_values(args.annotator_labels) if args.annotator_labels else None,
            external=external,
            max_bytes=int(args.max_mb * 1024**2),
            shuffle_seed=args.shuffle_seed,
            skip_invalid=args.skip_invalid,
        )
        repo = open_repository(_settings(args))
        done = import_with_rejects(repo, args.file, **options)
    except (ImportFileError, DatasetExists, ValueError) as exc:
        print(f"error: {exc}\nnothing was imported", file=sys.stderr)
        return 2
    info = done.info
    print(f"imported {info.n_items} items as data set {info.name!r} (format {info.format})")
    for note in info.notes:
        print(f"note: {note}")
    _report_rejects(args, info.name, done.rejects)
    return 0


def labels_import_command(args: argparse.Namespace) -> int:
    from rrm_ui.io.importers import ImportFileError, LabelFile, parse_label_values
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import attach_labels

    try:
        spec = LabelFile(
            args.file,
            parse_label_values(args.labels),
            id_field=args.id_field,
            columns=dict(_pair(c, "--annotator-column") for c in args.annotator_column),
            annotator_field=args.annotator_field,
            label_field=args.label_field,
            note_field=args.note_field,
            pair_fields=_fields(args.pair_fields, "--pair-fields"),
        )
        done = attach_labels(open_repository(_settings(args)), args.dataset, spec, skip_invalid=args.skip_invalid,
                             max_bytes=int(args.max_mb * 1024**2))  # fmt: skip
    except (ImportFileError, ValueError) as exc:
        print(f"error: {exc}\nnothing was imported", file=sys.stderr)
        return 2
    print(done.describe())
    _report_rejects(args, f"{done.dataset}.labels", done.rejects)
    return 0


def verdicts_import_command(args: argparse.Namespace) -> int:
    from rrm_ui.io.importers import ExternalVerdicts, ImportFileError, parse_label_values
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import attach_verdicts

    try:
        spec = ExternalVerdicts(args.file, args.run, args.id_field, args.verdict_field,
                                parse_label_values(args.labels, verdicts=True), args.ranking_field)  # fmt: skip
        done = attach_verdicts(open_repository(_settings(args)), args.dataset, spec, skip_invalid=args.skip_invalid,
                               max_bytes=int(args.max_mb * 1024**2))  # fmt: skip
    except (ImportFileError, ValueError) as exc:
        print(f"error: {exc}\nnothing was imported", file=sys.stderr)
        return 2
    print(done.describe())
    _report_rejects(args, f"{done.dataset}.{args.run}", done.rejects)
    return 0


def _fields(text: str | None, flag: str) -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [f.strip() for f in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{flag} expects two field names, I_FIELD,J_FIELD; found {text!r}")
    return parts[0], parts[1]


def _skip_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid rows and write every refused row, with its line and reason, to a rejects "
                   "file (default: one bad row refuses the whole file)")  # fmt: skip
    p.add_argument("--rejects", metavar="FILE", help="with --skip-invalid: where to write the refused rows "
                   "(default ./<data set>.rejects.jsonl)")  # fmt: skip


def _report_rejects(args: argparse.Namespace, name: str, rejects: tuple) -> None:
    from rrm_ui.services.datasets import default_rejects_path, write_rejects

    if not args.skip_invalid:
        return
    if not rejects:
        print("no row was refused")
        return
    path = write_rejects(args.rejects or default_rejects_path(name), rejects)
    print(f"skipped {len(rejects)} refused row(s), each with its line and reason, written to {path}")
    for r in rejects[:5]:
        where = f"{r.unit} {r.line}" + (f", field '{r.field}'" if r.field else "")
        print(f"  {where}: {r.reason}")
    if len(rejects) > 5:
        print(f"  ... and {len(rejects) - 5} more in {path}")


IMPORT_EXAMPLES = """\
field mappings (--map KEY=FIELDS), one example per kind:
  top-level fields      --map query=instruction+input --map responses=output_1,output_2
                        --map label=preference --labels 1=A,2=B,0=tie
  keys with spaces      --map "query=Question text" --map "responses=Answer A,Answer B"
  a list field          --map query=prompt --map responses=completions
  nested objects        --map query=meta.question --map responses=a.text,b.text
  lists of objects      --map query=conversation_input --map responses=bon_best.answer,loser_list[].answer
                        --gold first-beats-rest --map id=bon_uid
                        (the other fields of each object, e.g. llm_name, are kept as per-response metadata;
                        a list of {role, content} messages as the query is flattened into role-prefixed turns)
  one element           --map responses=answers[0].text,answers[1].text
  id and subset         --map id=uid --map subset=category
Empty responses are kept (a model that answered nothing); numbers and booleans where text is
expected are read as their text (true -> "True"); both are counted in the notes. Label codes
are never guessed. Human labels and other judges' verdicts can also be attached later:
`rrm-ui labels import` and `rrm-ui verdicts import`."""

LABELS_EXAMPLES = """\
examples:
  wide form (one column per annotator; 0 = tie):
    rrm-ui labels import labels.jsonl --dataset mt-bench --id-field id \\
      --annotator-column annotator1=ann1 --annotator-column annotator2=ann2 --labels 1=A,2=B,0=tie
  long form (one row per label):
    rrm-ui labels import votes.csv --dataset mt-bench --annotator-field judge --label-field winner \\
      --labels model_a=A,model_b=B,tie=tie --note-field comment
  a list item (RM-Bench): name its two responses, 0-based in the file's order:
    rrm-ui labels import pairs.jsonl --dataset rmbench --annotator-field who --label-field pick \\
      --pair-fields i,j --labels A=A,B=B,tie=tie
A and B refer to the order of the data set's source file (a pair the importer showed swapped
is swapped back). Labels are appended: an annotator's latest label on an item is the one that
counts, the earlier ones stay in its history. Ids the data set lacks are refused (or, with
--skip-invalid, skipped and written to the rejects file)."""

VERDICTS_EXAMPLES = """\
example (a judge that wrote 1, 2, Tie, and 'garbage' where its output could not be parsed):
    rrm-ui verdicts import judge.jsonl --dataset llmbar --run gpt-4-judge --id-field id \\
      --verdict-field pred --labels 1=A,2=B,Tie=tie,garbage=none
a list item is ranked: --ranking-field ranking (indices in the file's order, best first; an
empty ranking is no verdict); pair items in the same file still use the verdict field.
'none' stores a verdict the judge failed to give (an undecided result: it counts against the
judge in agreement, as rrm-ui's own runs without a verdict do); an empty value is no row at all.
Each file becomes one new external run; rows for ids the data set lacks are refused (or, with
--skip-invalid, skipped and written to the rejects file)."""


def export_command(args: argparse.Namespace) -> int:
    from rrm_ui.services import open_repository
    from rrm_ui.services.exports import ExportFilters, export

    filters = ExportFilters(
        dataset=args.dataset,
        run=args.run,
        annotator=args.annotator,
        only_corrected=args.only_corrected,
        only_disagreements=args.only_disagreements,
        with_reasoning=args.with_reasoning,
        fill_from=args.fill_from,
    )
    try:
        summary = export(open_repository(_settings(args)), args.format, args.out, filters)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


def guidelines_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rrm_ui.services import open_repository
    from rrm_ui.services.review import save_guidelines

    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(args.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {args.file}: {exc}") from exc
        saved = save_guidelines(open_repository(_settings(args)), args.name, text, None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"guidelines of {args.name!r}: version {saved.version} ({len(saved.text):,} characters); "
          "labels made from now on record this version")  # fmt: skip
    return 0


def criteria_command(args: argparse.Namespace) -> int:
    from rrm_ui.services import open_repository
    from rrm_ui.services.review import set_criteria

    try:
        names = set_criteria(open_repository(_settings(args)), args.name, args.criteria, None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"criteria of {args.name!r}: {', '.join(names) if names else 'none'}")
    return 0


def blind_command(args: argparse.Namespace) -> int:
    from rrm_ui.services import open_repository
    from rrm_ui.services.review import set_blind

    value = {"on": True, "off": False, "auto": None}[args.setting]
    try:
        set_blind(open_repository(_settings(args)), args.name, value, None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = {"on": "blind to each other", "off": "see each other's labels (the research view)",
            "auto": "blind to each other when the app's overlap is above 1"}[args.setting]  # fmt: skip
    print(f"annotators of {args.name!r}: {what}; reviewers and admins see every label")
    return 0


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{flag} expects COLUMN=NAME, found {text!r}")
    return key.strip(), value.strip()
