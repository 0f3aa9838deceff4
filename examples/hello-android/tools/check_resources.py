#!/usr/bin/env python3
"""Check this app's Android resources before building.

Usage: python3 tools/check_resources.py

Checks AndroidManifest.xml and every XML file under res/:
  * each file is well-formed XML and res/ file names are valid for aapt;
  * every @string/NAME used anywhere is defined in res/values/strings.xml
    (or another res/values/*.xml file);
  * no string is empty, no string name is defined twice, names are valid;
  * strings avoid the mistakes aapt rejects: an unescaped apostrophe (write
    \\' ), a leading @ or ? that is not a reference (write \\@ or \\? ), and
    several non-positional %-substitutions (write %1$s %2$s);
  * res/layout/activity_main.xml exists (MainActivity loads it by name).

Problems are printed one per line as `path:line: message`, followed by a
summary line, and the exit status is 1. On success it prints a one-line
summary and exits 0. Standard library only.
"""

from __future__ import annotations

import re
import sys
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "AndroidManifest.xml"
RES_DIR = ROOT / "res"
STRINGS_FILE = "res/values/strings.xml"
MAIN_LAYOUT = "activity_main"
MAIN_ACTIVITY_SMALI = ROOT / "smali/dev/honk/hello/MainActivity.smali"

RES_FILE_NAME_RE = re.compile(r"^[a-z0-9_.]+$")
RES_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# A whole attribute value / text that is a string reference, e.g. "@string/x",
# "@*string/x", "@android:string/ok", "@dev.honk.hello:string/x".
STRING_REF_RE = re.compile(r"^@\*?(?:(?P<pkg>[A-Za-z0-9_.]+):)?string/(?P<name>\S+)$")
ANY_REF_RE = re.compile(r"^[@?]\*?(?:[A-Za-z0-9_.]+:)?[A-Za-z0-9_]+/[A-Za-z0-9_.]+$")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    line: int
    attr_lines: dict[str, int] = field(default_factory=dict)
    text_parts: list[str] = field(default_factory=list)
    text_line: int | None = None
    children: list[Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()


@dataclass
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def parse_xml(path: Path, problems: list[Problem]) -> Element | None:
    """Parse with expat, keeping line numbers; report malformed XML."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(rel(path), 1, f"cannot read file: {exc.strerror}"))
        return None
    lines = data.decode("utf-8", errors="replace").splitlines()

    parser = xml.parsers.expat.ParserCreate()
    stack: list[Element] = []
    root: list[Element] = []

    def attr_line(name: str, start: int) -> int:
        pattern = re.compile(r"(?:^|\s)" + re.escape(name) + r"\s*=")
        for index in range(start - 1, len(lines)):
            if pattern.search(lines[index]):
                return index + 1
            if index > start - 1 and "<" in lines[index]:
                break
        return start

    def start(tag: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        element = Element(tag, dict(attrs), line)
        element.attr_lines = {name: attr_line(name, line) for name in attrs}
        if stack:
            stack[-1].children.append(element)
        else:
            root.append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if not stack:
            return
        element = stack[-1]
        if element.text_line is None and data.strip():
            leading = data[: len(data) - len(data.lstrip())]
            element.text_line = parser.CurrentLineNumber + leading.count("\n")
        element.text_parts.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        reason = xml.parsers.expat.errors.messages.get(exc.code, str(exc))
        problems.append(
            Problem(
                rel(path),
                exc.lineno,
                f"XML is not well-formed: {reason} (column {exc.offset + 1})",
            )
        )
        return None
    return root[0] if root else None


def unescaped_apostrophe(text: str) -> bool:
    """True if aapt would reject the string ("Apostrophe not preceded by \\")."""
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "'" and not quoted:
            return True
    return False


def bad_substitutions(text: str) -> bool:
    """Mirror aapt's check for several non-positional %-substitutions."""
    nonpositional = False
    count = 0
    i, end = 0, len(text)
    while i < end:
        if text[i] == "%" and i + 1 < end:
            i += 1
            if text[i] == "%":
                i += 1
                continue
            count += 1
            if text[i].isdigit():
                while i < end and text[i].isdigit():
                    i += 1
                if i >= end or text[i] != "$":
                    nonpositional = True
            elif text[i] == "<":
                nonpositional = True
                i += 1
                if i < end and text[i] == "$":
                    i += 1
            else:
                nonpositional = True
            while i < end and (text[i] in "-#+ ,(" or text[i].isdigit()):
                i += 1
            if i < end and text[i] in "DFKMWZkmwyz":
                return False  # looks like a Time.format() pattern
        i += 1
    return count > 1 and nonpositional


def is_local_string_ref(value: str, package: str | None) -> str | None:
    match = STRING_REF_RE.match(value.strip())
    if not match:
        return None
    pkg = match.group("pkg")
    if pkg is not None and pkg != package:
        return None  # e.g. @android:string/ok, provided by the framework
    return match.group("name")


def main() -> int:
    problems: list[Problem] = []

    if not MANIFEST.is_file():
        problems.append(Problem("AndroidManifest.xml", 1, "file is missing"))
    if not RES_DIR.is_dir():
        problems.append(Problem("res", 1, "directory is missing"))

    xml_files: list[Path] = []
    if MANIFEST.is_file():
        xml_files.append(MANIFEST)
    if RES_DIR.is_dir():
        for path in sorted(RES_DIR.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.parent.parent != RES_DIR:
                problems.append(
                    Problem(
                        rel(path),
                        1,
                        "resource files must be exactly one directory below res/ (e.g. res/layout/name.xml)",
                    )
                )
                continue
            if not RES_FILE_NAME_RE.match(path.name):
                problems.append(
                    Problem(rel(path), 1, "invalid resource file name: use only lowercase letters, digits, '_' and '.'")
                )
            if path.suffix == ".xml":
                xml_files.append(path)

    trees: dict[Path, Element] = {}
    for path in xml_files:
        tree = parse_xml(path, problems)
        if tree is not None:
            trees[path] = tree

    package = None
    if MANIFEST in trees:
        package = trees[MANIFEST].attrs.get("package")

    # String definitions, grouped by values directory (values, values-fr, ...).
    defined: dict[str, dict[str, tuple[str, int]]] = {}
    for path, tree in trees.items():
        if path.parent.parent != RES_DIR or not path.parent.name.startswith("values"):
            continue
        if tree.tag != "resources":
            problems.append(Problem(rel(path), tree.line, f"root element must be <resources>, not <{tree.tag}>"))
            continue
        per_dir = defined.setdefault(path.parent.name, {})
        for element in tree.children:
            if element.tag != "string":
                continue
            name = element.attrs.get("name")
            where = rel(path)
            if not name:
                problems.append(Problem(where, element.line, '<string> has no name="..." attribute'))
                continue
            if not RES_NAME_RE.match(name):
                problems.append(
                    Problem(
                        where,
                        element.line,
                        f"invalid string name '{name}': use letters, digits and '_' "
                        "and start with a letter (names must be Java identifiers)",
                    )
                )
            if name in per_dir:
                first_path, first_line = per_dir[name]
                problems.append(
                    Problem(
                        where, element.line, f"duplicate string '{name}' (first defined at {first_path}:{first_line})"
                    )
                )
                continue
            per_dir[name] = (where, element.line)

            text = "".join(part for e in element.iter() for part in e.text_parts)
            stripped = text.strip()
            if not stripped or stripped in ('""', "''"):
                problems.append(Problem(where, element.line, f"string '{name}' is empty"))
                continue
            if unescaped_apostrophe(text):
                problems.append(
                    Problem(
                        where,
                        element.line,
                        f"string '{name}' has an unescaped apostrophe; write \\' instead of ' (aapt rejects it)",
                    )
                )
            if stripped[0] in "@?" and not ANY_REF_RE.match(stripped):
                problems.append(
                    Problem(
                        where,
                        element.line,
                        f"string '{name}' starts with '{stripped[0]}', which aapt "
                        f"reads as a reference; write \\{stripped[0]} instead",
                    )
                )
            if element.attrs.get("formatted") != "false" and bad_substitutions(stripped):
                problems.append(
                    Problem(
                        where,
                        element.line,
                        f"string '{name}' has several non-positional substitutions; "
                        "use %1$s, %2$s, ... (aapt rejects it)",
                    )
                )

    default_strings = defined.get("values", {})

    # Every @string/NAME used anywhere must exist in the default values.
    for path, tree in trees.items():
        for element in tree.iter():
            uses: list[tuple[str, int]] = []
            for attr, value in element.attrs.items():
                name = is_local_string_ref(value, package)
                if name is not None:
                    uses.append((name, element.attr_lines.get(attr, element.line)))
            if element.text_line is not None and not element.children:
                name = is_local_string_ref(element.text, package)
                if name is not None:
                    uses.append((name, element.text_line))
            for name, line in uses:
                if name not in default_strings:
                    problems.append(
                        Problem(rel(path), line, f"@string/{name} is used but not defined in {STRINGS_FILE}")
                    )

    # MainActivity loads the main layout by name, so it must exist.
    layout_files = [p for p in xml_files if p.parent.parent == RES_DIR and p.parent.name.startswith("layout")]
    if not (RES_DIR / "layout" / f"{MAIN_LAYOUT}.xml").is_file():
        line = 1
        smali_path = rel(MAIN_ACTIVITY_SMALI)
        try:
            for index, text in enumerate(MAIN_ACTIVITY_SMALI.read_text(encoding="utf-8").splitlines(), 1):
                if "const-string" in text and f'"{MAIN_LAYOUT}"' in text:
                    line = index
                    break
        except OSError:
            pass
        problems.append(
            Problem(
                smali_path,
                line,
                f'MainActivity loads the layout "{MAIN_LAYOUT}" by name, but '
                f"res/layout/{MAIN_LAYOUT}.xml does not exist",
            )
        )

    if problems:
        problems.sort(key=lambda p: (p.path, p.line))
        for problem in problems:
            print(problem)
        count = len(problems)
        print(f"resources check FAILED: {count} problem{'s' if count != 1 else ''}")
        return 1

    n_strings = len(default_strings)
    n_layouts = len(layout_files)
    print(
        f"resources OK: {n_strings} string{'s' if n_strings != 1 else ''}, "
        f"{n_layouts} layout{'s' if n_layouts != 1 else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
