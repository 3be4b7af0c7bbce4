"""Issue 18: the frontend names no model and no family in its code. It builds its menus and its
chart set from /api/meta (frontend/models.js reads the families there), so a new model or family
needs no change to the page. This scans frontend/ (the vendored Plotly is served from elsewhere;
a vendor/ folder would be skipped) for the names /api/meta lists, as code: an identifier or a part
of one (isRecurrent, mlp_only_keys, run.recurrent), or a string that is the name itself ("lstm",
'[data-fix=lstm]'). Comments and prose in strings ("an LSTM cell") are not code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradscope.config import meta

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
SKIP_DIRS = {"vendor"}
# after these, a `/` starts a regular expression, not a division
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {"", "return", "typeof", "case", "in", "of", "delete", "void", "new", "=>"}


def names() -> set[str]:
    m = meta()
    return {n.lower() for n in [*m["models"], *m["families"], *m["model_family"].values()]}


def split_identifier(token: str) -> list[str]:
    """isRecurrent -> [is, recurrent]; mlp_only_keys -> [mlp, only, keys]; LSTMCell -> [lstm, cell]."""
    parts = []
    for chunk in re.split(r"[_$\-\d]+", token):
        parts += re.findall(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z]?[a-z]+|[A-Z]+", chunk)
    return [p.lower() for p in parts if p]


def js_pieces(src: str) -> tuple[list[str], list[str]]:
    """(code tokens, string literals' contents) of a JS source, comments dropped. Template literals:
    their text is a string, their ${...} parts code. Regular expressions are dropped."""
    code, strings = [], []
    i, n, prev = 0, len(src), ""
    stack = []  # brace depth of each open ${ ... } in a template literal

    def read_template(i):  # from just after a backtick or a closing } of ${}: text up to ` or ${
        buf = []
        while i < n:
            c = src[i]
            if c == "\\":
                buf.append(src[i:i + 2])
                i += 2
                continue
            if c == "`":
                strings.append("".join(buf))
                return i + 1, False
            if c == "$" and src[i + 1:i + 2] == "{":
                strings.append("".join(buf))
                return i + 2, True
            buf.append(c)
            i += 1
        raise ValueError("unterminated template literal")

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            i = src.index("*/", i + 2) + 2
        elif c in "\"'":
            j, buf = i + 1, []
            while src[j] != c:
                if src[j] == "\\":
                    buf.append(src[j:j + 2])
                    j += 2
                else:
                    buf.append(src[j])
                    j += 1
            strings.append("".join(buf))
            i, prev = j + 1, "str"
        elif c == "`":
            i, inner = read_template(i + 1)
            if inner:
                stack.append(0)
            prev = "str"
        elif c == "/" and prev in REGEX_AFTER:
            j, cls = i + 1, False
            while cls or src[j] != "/":
                if src[j] == "\\":
                    j += 1
                elif src[j] == "[":
                    cls = True
                elif src[j] == "]":
                    cls = False
                j += 1
            i = j + 1
            while i < n and src[i].isalpha():
                i += 1
            prev = "re"
        elif c == "{" and stack:
            stack[-1] += 1
            i, prev = i + 1, "{"
        elif c == "}" and stack and stack[-1] == 0:
            stack.pop()
            i, inner = read_template(i + 1)
            if inner:
                stack.append(0)
            prev = "str"
        elif c == "}" and stack:
            stack[-1] -= 1
            i, prev = i + 1, "}"
        elif c.isalpha() or c in "_$":
            m = re.compile(r"[\w$]+").match(src, i)
            code.append(m.group())
            i, prev = m.end(), m.group()
        elif c.isspace():
            i += 1
        else:
            if src.startswith("=>", i):
                i, prev = i + 2, "=>"
            else:
                i, prev = i + 1, c
    return code, strings


def string_hits(text: str, bad: set[str]) -> bool:
    """A string that is a name, or a selector / key built around one ("[data-fix=lstm]", "lstm.h")."""
    words = re.findall(r"[A-Za-z]+", text)
    if not words:
        return False
    if " " not in text.strip():  # one token: a name, a key, a selector, an id
        return any(p in bad for w in re.findall(r"[\w$\-]+", text) for p in split_identifier(w))
    return False


def offences(path: Path, bad: set[str]) -> list[str]:
    src = path.read_text(encoding="utf-8")
    out = []
    if path.suffix in (".js", ".mjs"):
        code, strings = js_pieces(src)
        out += [f"identifier {t}" for t in code if set(split_identifier(t)) & bad]
        out += [f"string {s!r}" for s in strings if string_hits(s, bad)]
    elif path.suffix in (".html", ".htm"):
        src = re.sub(r"<!--.*?-->", "", src, flags=re.S)
        for script in re.findall(r"<script[^>]*>(.*?)</script>", src, flags=re.S):
            code, strings = js_pieces(script)
            out += [f"identifier {t}" for t in code if set(split_identifier(t)) & bad]
            out += [f"string {s!r}" for s in strings if string_hits(s, bad)]
        for attr, value in re.findall(r"([\w\-:]+)\s*=\s*\"([^\"]*)\"", src):
            if string_hits(value, bad):
                out.append(f"attribute {attr}={value!r}")
    elif path.suffix == ".css":
        src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
        out += [f"css {t}" for t in re.findall(r"[A-Za-z_][\w\-]*", src) if set(split_identifier(t)) & bad]
    return out


def frontend_files():
    return sorted(p for p in FRONTEND.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(FRONTEND).parts)
                  and p.suffix in (".js", ".mjs", ".html", ".htm", ".css"))


def test_the_scanner_finds_names_used_as_code_and_leaves_comments_and_prose():
    bad = {"lstm", "mlp", "recurrent"}
    sample = '''// the LSTM (Hochreiter & Schmidhuber 1997): a comment
/* the MLP */
import { isRecurrent } from "./models.js";
const a = x.split(/["'`]/), b = `${c.recurrent}: an LSTM cell`, d = 1 / 2 / 3;
if (model === "lstm") f("[data-fix=mlp]", "applies to the MLP only");
const e = `text ${ { k: `${"mlp"}` }.k } more`;
'''
    p = Path("/tmp/_gradscope_names_sample.js")
    p.write_text(sample)
    got = offences(p, bad)
    assert got == ["identifier isRecurrent", "identifier recurrent", "string 'lstm'", "string '[data-fix=mlp]'", "string 'mlp'"], got


def test_the_scanner_reads_every_frontend_file():
    files = frontend_files()
    assert any(p.name == "models.js" for p in files) and any(p.suffix == ".html" for p in files)
    for p in files:
        if p.suffix == ".js":
            code, _ = js_pieces(p.read_text(encoding="utf-8"))
            assert code, p  # parsed to the end, with code in it


def test_frontend_names_no_model_or_family_in_code():
    bad = names()
    assert {"mlp", "rnn", "lstm", "gru", "recurrent"} <= bad  # what /api/meta lists today
    found = {str(p.relative_to(FRONTEND)): hits for p in frontend_files() if (hits := offences(p, bad))}
    assert not found, f"model or family names used as code (ask frontend/models.js about capabilities instead): {found}"


@pytest.mark.parametrize("token,parts", [("isRecurrent", ["is", "recurrent"]), ("mlp_only_keys", ["mlp", "only", "keys"]),
                                         ("LSTMCell", ["lstm", "cell"]), ("irnn", ["irnn"]), ("gru2", ["gru"])])
def test_split_identifier(token, parts):
    assert split_identifier(token) == parts
