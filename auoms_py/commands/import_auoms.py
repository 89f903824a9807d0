"""`auoms-py import-auoms OUTCONF`: convert an AUOMS outconf.d/*.conf into an auoms-py filter file (docs/filters.md)."""
from __future__ import annotations

import os
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-auoms", help="convert an AUOMS outconf.d/*.conf into a filter file",
        description="Convert the process filters, filter_record_types and filter_field_names of an AUOMS output "
                    "configuration into the auoms-py filter file schema. Prints the YAML (or writes --output); "
                    "notes on anything that changes meaning go to stderr and into the file's header.")
    parser.add_argument("conf", metavar="OUTCONF", help="AUOMS output configuration, e.g. /etc/opt/microsoft/auoms/"
                        "outconf.d/syslog.conf")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the filter file here instead of stdout "
                        "(refuses to overwrite an existing file without --force)")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.add_argument("--output-name", metavar="NAME", help="auoms.yaml output name for the record-type and field "
                        "drops (default: the conf file's name without .conf; \"*\" = every output)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from auoms_py.filters.import_auoms import AuomsConfError, convert

    try:
        with open(args.conf, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        print(f"auoms-py import-auoms: {args.conf}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        yaml_text, notes = convert(text, args.conf, args.output_name)
    except AuomsConfError as exc:
        print(f"auoms-py import-auoms: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output:
        if os.path.exists(args.output) and not args.force:
            print(f"auoms-py import-auoms: {args.output} exists (use --force to overwrite)", file=sys.stderr)
            return 1
        tmp = f"{args.output}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(yaml_text)
        os.replace(tmp, args.output)  # a watching agent never reads a half-written file
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(yaml_text)
    return 0
