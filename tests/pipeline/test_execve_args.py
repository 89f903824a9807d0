"""quoted_argv (C-level passes for the commonest EXECVE records) must give what build_argv gives, or step aside."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auoms_py.pipeline.escape import bash_escape, join_args
from auoms_py.pipeline.execve import build_argv, quoted_argv
from auoms_py.pipeline.model import Record
from auoms_py.pipeline.parse import parse_line, split_fields
from tests.paths import AUOMS_REF, SHARED
from tests.pipeline.helpers import read_lines
from tests.pipeline.test_peer_logs import RAW_LOGS

EXECVE = 1309


def general(bodies):
    return build_argv([split_fields(EXECVE, body) for body in bodies])


def assert_same_or_none(bodies):
    quick = quoted_argv(bodies)
    if quick is not None:
        assert quick == general(bodies)
    return quick


def _events_execve_bodies(lines):
    events = {}
    for line in lines:
        try:
            record = Record(*parse_line(line))
        except ValueError:
            continue
        if record.code == EXECVE:
            events.setdefault(record.key, []).append(record.body)
    return list(events.values())


def test_every_execve_of_the_reference_cases_and_logs():
    cases = json.loads((AUOMS_REF / "execve_converter_cases.json").read_text())["cases"]
    bodies = [_events_execve_bodies(case["event_records"])[0] for case in cases]
    for path in RAW_LOGS:
        bodies += _events_execve_bodies(read_lines(path))
    taken = [assert_same_or_none(event) for event in bodies]
    assert any(result is not None for result in taken)
    assert any(result is None for result in taken)


def test_a_long_command_line_over_many_records_with_split_arguments():
    args = [f"arg{number:04d}-" + "x" * 30 for number in range(3000)]
    bodies, current = [], "argc=3000"
    for number, arg in enumerate(args):
        if number % 400 == 399:  # an argument split at a record boundary, as the kernel does
            bodies.append(f'{current} a{number}_len={len(arg)} a{number}[0]="{arg[:10]}"')
            current = f'a{number}[1]="{arg[10:]}"'
        else:
            current += f' a{number}="{arg}"'
    bodies.append(current)
    argv, cmdline, argc = assert_same_or_none(bodies)
    assert argv == args and cmdline == " ".join(args) and argc == 3000


def test_names_for_more_arguments_than_kept_are_made_per_use():
    from auoms_py.pipeline import execve

    count = execve._KEPT_NAMES + 10
    args = [f"x{number}" for number in range(count)]
    body = f"argc={count} " + " ".join(f'a{number}="{arg}"' for number, arg in enumerate(args))
    assert assert_same_or_none([body]) == (args, " ".join(args), count)
    assert len(execve._ARG_NAMES) <= execve._KEPT_NAMES and len(execve._NUMBER_TEXTS) <= execve._KEPT_NAMES


@pytest.mark.parametrize("bodies", [
    ['argc=2 a0="ls" a1_len=6 a1[0]="abc"'],  # a piece missing: <...>
    ['argc=2 a0="ls" a1_len=3 a1[1]="abc"'],  # piece 0 missing
    ['argc=3 a0="ls" a2="x"'],  # a1 missing: <1...1>
    ['argc=2 a0="ls" a1=2F746D70'],  # hex
    ['argc=2 a0="ls" a1="a b"'],  # a space inside quotes (never from the kernel)
    ['argc=2 a0="ls"  a1="x"'],  # two spaces
    ['argc=2 a0="ls" a1="x_len=3"'],  # looks like a split argument inside a value
    ['argc=1 a0="x\x0by"'],  # other whitespace: the general path splits there
    ['argc=0'],
    ['argc=2 a0="ls" a1=""'],
    ['argc=2 a0="echo" a1="$HOME!"'],
])
def test_unusual_records_give_the_same_or_step_aside(bodies):
    assert_same_or_none(bodies)


_VALUE = st.sampled_from(['"x"', '""', '"a b"', '"$v"', "'", '"!"', "2F746D70", "ABC", "(null)", '"\\"', '"é"',
                          '"\t"', '"a"b"', '"'])
_TOKEN = st.one_of(
    st.tuples(st.integers(0, 4), _VALUE).map(lambda t: f"a{t[0]}={t[1]}"),
    st.tuples(st.integers(0, 4), st.integers(0, 9)).map(lambda t: f"a{t[0]}_len={t[1]}"),
    st.tuples(st.integers(0, 4), st.integers(0, 2), _VALUE).map(lambda t: f"a{t[0]}[{t[1]}]={t[2]}"),
    st.sampled_from(["argc=3", "x", "=", "a01=\"x\""]),
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 5), st.lists(st.lists(_TOKEN, max_size=6), min_size=1, max_size=3),
       st.sampled_from([" ", "  "]))
def test_random_records_give_the_same_or_step_aside(argc, records, separator):
    bodies = [separator.join(tokens) for tokens in records]
    bodies[0] = f"argc={argc}" + (" " + bodies[0] if bodies[0] else "")
    assert_same_or_none(bodies)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"'),
                        max_size=12), min_size=1, max_size=30),
       st.integers(1, 40))
def test_printable_arguments_split_anywhere_are_taken(args, split_length):
    """Every argument the kernel would quote, some split into pieces: taken, and the same as build_argv."""
    tokens = []
    for number, arg in enumerate(args):
        if len(arg) > split_length:
            pieces = [arg[i:i + split_length] for i in range(0, len(arg), split_length)]
            tokens.append(f"a{number}_len={len(arg)}")
            tokens += [f'a{number}[{index}]="{piece}"' for index, piece in enumerate(pieces)]
        else:
            tokens.append(f'a{number}="{arg}"')
    result = assert_same_or_none([" ".join([f"argc={len(args)}", *tokens])])
    assert result is not None or "" in args or any("_len=" in arg for arg in args)
    if result is not None:
        assert result[0] == args


def test_the_benchmark_corpus_big_events(tmp_path):
    import subprocess
    import sys

    corpus = tmp_path / "corpus.raw"
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), "--events", "2000", "--seed", "3",
                    "--big-rate", "0.05", "-o", str(corpus)], check=True, capture_output=True)
    events = _events_execve_bodies(read_lines(corpus))
    taken = [assert_same_or_none(bodies) for bodies in events if len(bodies) > 1]
    assert taken and any(result is not None for result in taken)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.text(st.characters(max_codepoint=0xFF), max_size=8),
                          st.text(st.sampled_from("ab-/.= !&();<>|\"$'`\\\t\x7f"), max_size=4)), max_size=6))
def test_join_args_equals_bash_escape_word_by_word(args):
    """join_args takes words bash_escape leaves alone in one pass: it must write what the word-by-word join does."""
    assert join_args(args) == " ".join([bash_escape(arg) for arg in args])


@pytest.mark.parametrize("trigger", list(" &();<>|"))
@pytest.mark.parametrize("length", [10, 255, 256, 20000])
def test_long_and_short_words_with_a_double_quote_trigger_are_double_quoted(trigger, length):
    """bash_escape tests short and long words for these characters in different ways: same result."""
    word = "a" * (length - 1) + trigger
    assert bash_escape(word) == f'"{word}"'
    assert bash_escape(trigger + "b" * (length - 1)) == f'"{trigger}{"b" * (length - 1)}"'
    assert bash_escape("c" * length) == "c" * length
