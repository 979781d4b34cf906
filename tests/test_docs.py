"""The documentation proves what it claims: the site builds with ``mkdocs build --strict``, the CLI reference
is the parser's, every ``mmsctl`` command in the README and docs/ parses as written, example inputs exist or
are made by the docs, and the troubleshooting messages and environment variables are the code's."""
import ast
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from mmsctl.cli import reference

from helpers import REPO

pytestmark = pytest.mark.unit

DOCS = os.path.join(REPO, "docs")
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.md")))
README = os.path.join(REPO, "README.md")
SOURCE_FOLDERS = ("scripts", "archives", "config", "handlers", "docker")


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def rel(path):
    return os.path.relpath(path, REPO)


# -- the site -------------------------------------------------------------------------------------------
def test_mkdocs_builds_the_site_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
                          env=dict(os.environ, NO_COLOR="1"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    built = {os.path.relpath(p, site) for p in glob.glob(str(site / "**" / "index.html"), recursive=True)}
    expected = {"index.html"} | {os.path.join(os.path.basename(p)[:-3], "index.html") for p in PAGES
                                 if not p.endswith("index.md")}
    assert len(expected) > 15 and expected <= built, sorted(expected - built)


def test_every_page_is_in_the_nav():
    nav = read(os.path.join(REPO, "mkdocs.yml"))
    pages = [os.path.basename(p) for p in PAGES]
    assert len(pages) > 15
    assert [p for p in pages if not re.search(r":\s+%s\s*$" % re.escape(p), nav, re.M)] == []


def test_the_readme_is_a_front_page_with_working_links():
    text = read(README)
    assert len(text.encode("utf-8")) <= 10 * 1024
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) > 10
    assert [link for link in links if not os.path.isfile(os.path.join(REPO, link))] == []


INTERNAL = re.compile(r"\bseeds?\s+\d{3}\b|\bseeds? \d{3}'s|\bseed workflow|\bissue\s*#?\d+\b|shared/seeds", re.I)


def test_no_page_speaks_of_the_documents_the_project_grew_from():
    found = []
    for path in [README] + PAGES:
        for number, line in enumerate(read(path).splitlines(), 1):
            if INTERNAL.search(line):
                found.append("%s:%d: %s" % (rel(path), number, line.strip()))
    assert len(PAGES) > 15 and found == []


# -- the CLI reference ----------------------------------------------------------------------------------
def test_the_cli_reference_is_current():
    page = read(os.path.join(DOCS, "cli.md"))
    assert page == reference.render(), "docs/cli.md is stale: python -m mmsctl.cli.reference --write docs/cli.md"


def parser_tree(parser, path=("mmsctl",)):
    """Every (path, parser) of the real parser, walked here independently of the generator."""
    import argparse
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parser_tree(sub, path + (name,))


def test_the_cli_reference_names_every_subcommand_and_option():
    page = read(os.path.join(DOCS, "cli.md"))
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## `|\Z)", page, re.M | re.S))
    tree = list(parser_tree(reference.build_parser()))
    assert len(tree) > 25
    options = 0
    for path, parser in tree:
        name = " ".join(path)
        assert name in sections, "docs/cli.md has no section for %s" % name
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    options += 1
                    assert "`%s`" % flag in sections[name], "docs/cli.md: %s lacks %s" % (name, flag)
    assert options > 100


def test_the_generator_writes_and_checks_a_page(tmp_path):
    page = tmp_path / "cli.md"
    assert reference.main(["--write", str(page)]) == 0
    assert reference.main(["--check", str(page)]) == 0
    page.write_text(page.read_text() + "stale\n")
    assert reference.main(["--check", str(page)]) == 1


# -- the commands of the README and docs/ ---------------------------------------------------------------
def bash_lines(path):
    """The shell lines of a page's ```bash blocks: continuations joined, heredoc bodies left out."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", read(path), re.S):
        heredoc = None
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if heredoc:
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            match = re.search(r"<<-?\s*'?(\w+)'?", line)
            heredoc = match.group(1) if match else None
            if line.strip():
                lines.append(line.strip())
    return lines


def simple_commands(line):
    """The simple commands of one shell line, as words: those of ``$(...)`` first, then the line's, split at
    ``&&``, ``||``, ``;`` and ``|``; variables and substitutions become X, comments are dropped. A line whose
    quotes do not close (a JSON body over several lines) yields nothing."""
    texts = re.findall(r"\$\(([^()]*)\)", line) + [re.sub(r"\$\([^()]*\)", "X", line)]
    commands = []
    for text in texts:
        text = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z_0-9]*", "X", text)
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:
            continue
        current = []
        for token in tokens + [";"]:
            if token in ("&&", "||", ";", "|", "&", "(", ")"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def all_commands():
    """(page, words) of every simple command in the README and docs/."""
    found = []
    for path in [README] + PAGES:
        for line in bash_lines(path):
            found += [(rel(path), words) for words in simple_commands(line)]
    return found


def without_redirections(words):
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in (">", ">>", "<"):
            skip = True
        else:
            kept.append(word)
    return kept


CONTAINER_SERVE = ["serve", "--foreground", "--public", "--model-store", "/models"]


def mmsctl_argvs():
    """(page, argv) for each mmsctl command: ``mmsctl ...`` lines, and the arguments a ``docker run`` of an
    mmsctl image appends to the image's ``mmsctl serve``."""
    found = []
    for page, words in all_commands():
        words = without_redirections(words)
        if words[:1] == ["mmsctl"]:
            found.append((page, words[1:]))
        elif words[:2] == ["docker", "run"]:
            images = [i for i, word in enumerate(words) if re.match(r"mmsctl:\w+$", word)]
            if images:
                found.append((page, CONTAINER_SERVE + words[images[0] + 1:]))
    return found


def test_every_mmsctl_command_in_the_docs_parses_with_the_real_parser(capsys):
    parser = reference.build_parser()
    argvs = mmsctl_argvs()
    pages = {page for page, _ in argvs}
    assert len(argvs) > 60 and {"README.md", "docs/getting-started.md", "docs/ecs.md"} <= pages
    bad = []
    for page, argv in argvs:
        if "..." in argv:
            bad.append("%s: `mmsctl %s` elides arguments inside a command block" % (page, " ".join(argv)))
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exit:
            if exit.code == 0:  # --help, --version
                capsys.readouterr()
                continue
            bad.append("%s: `mmsctl %s`: %s" % (page, " ".join(argv), capsys.readouterr().err.strip()))
    assert bad == []


def test_every_python_module_the_docs_run_exists():
    """The benchmarks run as ``mmsctl bench NAME``: what the docs still run with ``python -m`` (the CLI reference's
    generator, ``venv``) must exist."""
    modules = [(page, words[2]) for page, words in all_commands()
               if len(words) > 2 and os.path.basename(words[0]).startswith("python") and words[1] == "-m"]
    assert ("docs/development.md", "mmsctl.cli.reference") in modules
    assert [(page, m) for page, m in modules if m.startswith("mmsctl") and importlib.util.find_spec(m) is None] == []


INPUT = re.compile(r"[\w./-]+\.(png|jpe?g|onnx|params|toml|txt|json)$")


def made_by_the_docs():
    """Files the README or a page makes: outputs of `>`, `cp`, `--out DIR` reports, and names in heredocs."""
    made = set()
    for page, words in all_commands():
        for i, word in enumerate(words):
            if word in (">", ">>") and i + 1 < len(words):
                made.add(words[i + 1])
            if word == "--out" and i + 1 < len(words):
                made.update(os.path.join(words[i + 1], name) for name in ("report.json", "report.md"))
        if words[:1] == ["cp"] and len(words) > 2:
            made.add(words[-1])
    for path in [README] + PAGES:
        for body in re.findall(r"<<-?\s*'?(\w+)'?\n(.*?)\n\1\n", read(path), re.S):
            made.update(re.findall(r"[\w./-]+\.(?:png|jpe?g|onnx|params|toml|txt|json)", body[1]))
        for line in bash_lines(path):
            match = re.search(r"(?:^|\s)>\s*([\w./-]+)", line)
            if match:
                made.add(match.group(1))
    return made


def test_example_inputs_exist_or_are_made_by_the_docs():
    made = made_by_the_docs()
    inputs = []
    for page, argv in mmsctl_argvs():
        if argv[:1] == ["archive"] or argv[:1] == ["predict"] or "--input" in argv or "--models-file" in argv \
                or "--bench-report" in argv or "--task-definition-file" in argv:
            previous = None
            for word in argv:
                if INPUT.match(word) and previous not in (">", ">>", "--out"):
                    inputs.append((page, word))
                previous = word
    assert len(inputs) > 15
    missing = [(page, name) for page, name in inputs
               if not os.path.exists(os.path.join(REPO, name)) and name not in made
               and os.path.basename(name) not in {os.path.basename(m) for m in made}]
    assert missing == []


# -- what the reference pages say about the code --------------------------------------------------------
def code_strings():
    """Every string constant of the product's code (implicit concatenations joined), up to its first line end."""
    strings = set()
    for folder in SOURCE_FOLDERS:
        for path in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True):
            for node in ast.walk(ast.parse(read(path), path)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 10:
                    strings.add(node.value.split("\n", 1)[0])
    return strings


def as_pattern(constant):
    """A %-format string as (a regular expression where each conversion matches any text, its literal length)."""
    parts = re.split(r"%(?:\.\d+)?[sdrgfx]", constant)
    return re.compile(".+".join(re.escape(part) for part in parts), re.S), sum(len(part) for part in parts)


def test_troubleshooting_quotes_the_codes_messages():
    text = read(os.path.join(DOCS, "troubleshooting.md"))
    messages = re.findall(r"^\*\*``? ?(.+?) ?``?\*\*$", text, re.M)
    assert len(messages) > 12
    patterns = [as_pattern(s) for s in code_strings()]
    stale = []
    for message in messages:
        quoted = re.sub(r"<[^>]+>", "X", message)
        # the code's literal text must be most of the message, so a bare "%s: %s" matches nothing
        if not any(size >= len(quoted) / 2 and pattern.fullmatch(quoted) for pattern, size in patterns):
            stale.append(message)
    assert stale == []


def test_the_configuration_reference_names_every_environment_variable():
    used = set()
    for folder in SOURCE_FOLDERS + ("tests",):
        for path in glob.glob(os.path.join(REPO, folder, "**", "*"), recursive=True):
            if os.path.isfile(path) and path.endswith((".py", ".sh", ".yaml")) or "Dockerfile" in path:
                used |= set(re.findall(r"\bMMSCTL_[A-Z_]*[A-Z]\b", read(path)))
    assert {"MMSCTL_STATE_DIR", "MMSCTL_MANAGEMENT_URL", "MMSCTL_VENV", "MMSCTL_ENGINE"} <= used
    page = read(os.path.join(DOCS, "configuration.md"))
    assert sorted(v for v in used if "`%s`" % v not in page) == []
