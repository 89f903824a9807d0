#!/bin/sh
# Instructions executed (valgrind callgrind), auoms-py replay beside ausearch -i on the same file: a count that
# does not depend on what else this shared machine is doing, unlike wall time.
#   bench/instructions.sh bench/out/corpus-20000-s1-i2.raw [replay options]
# Prints both counts, auoms-py's Python start-up (an empty input), and the ratios with and without it.
set -eu
file=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
empty=$(mktemp); trap 'rm -f "$empty"' EXIT
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
a=$(count ausearch -i --input "$file")
b=$(count "$python" -m auoms_py replay --quiet "$@" "$file")
c=$(count "$python" -m auoms_py replay --quiet "$@" "$empty")
echo "ausearch -i: $a instructions; auoms-py replay: $b (start-up $c)"
"$python" -c "print(f'ratio auoms-py/ausearch: {$b/$a:.2f} (without start-up: {($b-$c)/$a:.2f})')"
