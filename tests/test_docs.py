"""The docs (README.md and docs/*.md) name only things that exist.

Checked: every relative link and image (its file, and its #anchor among the target page's
headings), every repository path written in code (inline or in a code block), every file of
a table column whose header names its folder ("config (`configs/sfp/`)"), the script of
every `python X` / `bash X` command line, and every `sfp.` name (module or attribute). The
README is the front door: short, and it links every page of docs/.
"""
import glob
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').rglob('*.md'))]
# The pages the README links; pages in docs/ subfolders are linked from these.
TOP_PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
# Folders of the repository: a code token starting with one of them is a repository path.
REPO_FOLDERS = ('sfp', 'configs', 'tools', 'tests', 'docs', 'notebooks', 'demo', '.ci')
README_MAX_LINES = 200

FENCE = re.compile(r'^```.*?^```', re.M | re.S)
INLINE_CODE = re.compile(r'`([^`\n]+)`')
LINK = re.compile(r'!?\[(?:[^\]]|\][^(])*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^#{1,6}\s+(.+?)\s*#*\s*$', re.M)
SFP_NAME = re.compile(r'(?<![-\w])sfp(?:\.[A-Za-z_]\w*)+')
COMMAND = re.compile(r'(?:^|[\s;&|(])(?:\S*/)?(?:python3?|bash|sh)\s+([^\s-][^\s;&|)]*)')
PLACEHOLDER = re.compile(r'[<>{}$~]|\.\.\.')


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub('', page.read_text())):
        slug = anchor(heading)
        found.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
        seen[slug] = seen.get(slug, 0) + 1
    return found


def repo_path_problem(token: str, repo: Path, base: Path | None = None) -> str | None:
    """Why `token` (a path under `base`, else under the repository if it starts with one of
    its folders) names nothing; None when it exists or is not a repository path."""
    token = token.strip('()[],;:"\'').rstrip('.')
    if not token or PLACEHOLDER.search(token) or '://' in token:
        return None
    if base is None and token.split('/')[0] not in REPO_FOLDERS:
        return None
    path = (base or repo) / token
    if '*' in token:
        return None if glob.glob(str(path)) else f'{token}: matches no file'
    return None if path.exists() else f'{token}: no such file or folder'


def sfp_name_problem(name: str) -> str | None:
    parts = name.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            if not hasattr(obj, attribute):
                return f'{name}: {".".join(parts[:i])} has no {attribute!r}'
            obj = getattr(obj, attribute)
        return None
    return f'{name}: no such module'


def table_column_problems(text: str, repo: Path) -> list[str]:
    """Cells of a column whose header names a folder (`configs/sfp/`) are files in it."""
    problems = []
    for table in re.findall(r'(?:^\|.*\|[ \t]*\n)+', text, re.M):
        rows = [[cell.strip() for cell in line.strip().strip('|').split('|')]
                for line in table.strip().split('\n')]
        for column, header in enumerate(rows[0]):
            folders = [f for f in INLINE_CODE.findall(header) if f.endswith('/')]
            if len(folders) != 1 or repo_path_problem(folders[0], repo):
                continue
            for row in rows[2:]:
                for name in INLINE_CODE.findall(row[column] if column < len(row) else ''):
                    problem = repo_path_problem(name, repo, base=repo / folders[0])
                    if problem:
                        problems.append(f'{folders[0]}{problem}')
    return problems


def page_problems(page: Path, repo: Path = REPO) -> list[str]:
    text = page.read_text()
    prose = FENCE.sub('', text)
    code_blocks = FENCE.findall(text)
    problems = []
    for target in LINK.findall(prose):
        if re.match(r'[a-z]+:', target):
            continue
        file_part, _, fragment = target.partition('#')
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            problems.append(f'link {target}: no such file')
        elif fragment and linked.suffix == '.md' and fragment not in anchors(linked):
            problems.append(f'link {target}: no heading #{fragment} in {linked.name}')
    tokens = [t for span in INLINE_CODE.findall(prose) for t in span.split()]
    tokens += [t for block in code_blocks for t in block.split()]
    problems += filter(None, (repo_path_problem(t, repo) for t in tokens))
    for block in code_blocks:
        for script in COMMAND.findall(block):
            if not script.startswith(('tools/', '-')) and '/' not in script \
                    and not PLACEHOLDER.search(script) and script.endswith(('.py', '.sh')):
                problems.append(repo_path_problem(script, repo, base=repo))
    names = {n for span in INLINE_CODE.findall(prose) for n in SFP_NAME.findall(span)}
    names |= {n for block in code_blocks for n in SFP_NAME.findall(block)}
    names |= {f'{module}.{n.strip()}' for block in code_blocks
              for module, imported in re.findall(r'from (sfp[\w.]*) import ([\w, ]+)', block)
              for n in imported.split(',')}
    problems += filter(None, (sfp_name_problem(n) for n in sorted(names)))
    problems += table_column_problems(prose, repo)
    return [p for p in problems if p]


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_names_only_what_exists(page):
    assert page_problems(page) == []


def test_readme_is_a_front_door_linking_every_page():
    readme = (REPO / 'README.md').read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {(REPO / t.partition('#')[0]).resolve() for t in LINK.findall(readme)}
    unlinked = [p.name for p in TOP_PAGES[1:] if p.resolve() not in linked]
    assert unlinked == [], f'docs pages the README does not link: {unlinked}'


def test_every_page_is_linked_from_another():
    linked = {(page.parent / t.partition('#')[0]).resolve()
              for page in PAGES for t in LINK.findall(page.read_text())
              if not t.startswith('#')}
    orphans = [str(p.relative_to(REPO)) for p in PAGES[1:] if p.resolve() not in linked]
    assert orphans == [], f'docs pages no page links: {orphans}'


def test_the_checker_finds_what_is_missing(tmp_path):
    """A page with one of each kind of dead reference gets each reported, and only those."""
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'configs' / 'sfp').mkdir(parents=True)
    (tmp_path / 'configs' / 'sfp' / 'a.py').write_text('')
    (tmp_path / 'docs' / 'other.md').write_text('# Other page\n\n## A `code` section\n')
    page = tmp_path / 'docs' / 'page.md'
    page.write_text(
        '# Page\n\n[ok](other.md#a-code-section) [gone](missing.md) [bad](other.md#nope)\n'
        '[self](#page) [web](https://example.org/x.md) `configs/sfp/a.py` `configs/sfp/b.py`\n'
        '`configs/<method>/` `data/elsewhere.py` `sfp.apis.segment_images` `sfp.apis.nope`\n\n'
        '| config (`configs/sfp/`) | x |\n|---|---|\n| `a.py` | 1 |\n| `c.py` | 2 |\n\n'
        '```bash\npython tools/absent.py configs/sfp/a.py\nbash gone.sh && python -m x\n```\n')
    assert page_problems(page, repo=tmp_path) == [
        'link missing.md: no such file',
        'link other.md#nope: no heading #nope in other.md',
        'configs/sfp/b.py: no such file or folder',
        'tools/absent.py: no such file or folder',
        'gone.sh: no such file or folder',
        "sfp.apis.nope: sfp.apis has no 'nope'",
        'configs/sfp/c.py: no such file or folder',
    ]
