"""Lists of methods, presets and options in help texts and docs follow the registries:
every option of a tool is documented on its page, and every list of methods or presets
that the docs write out names all of them."""
import argparse
import importlib.util
import re

import pytest

from sfp.apis import PRESETS, available_methods

from .conftest import REPO

# Each tool and the page that documents its options.
TOOL_PAGES = {'demo': 'docs/get_started.md', 'paper_tables': 'docs/protocols.md',
              'benchmark': 'docs/speed.md', 'webui': 'docs/webui.md'}


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'{name}_tool', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The tool's argument parser, caught as it parses."""
    caught = []

    def catch(parser, *args, **kwargs):
        caught.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', catch)
    tool = load_tool(name)
    with pytest.raises(SystemExit):
        (getattr(tool, 'parse_args', None) or tool.main)([])
    return caught[0]


@pytest.mark.parametrize('tool', sorted(TOOL_PAGES))
def test_every_option_of_a_tool_is_on_its_page(tool, monkeypatch):
    parser = tool_parser(tool, monkeypatch)
    options = [o for action in parser._actions if action.help != argparse.SUPPRESS
               for o in action.option_strings if o.startswith('--') and o != '--help']
    page = (REPO / TOOL_PAGES[tool]).read_text()
    missing = [o for o in options if not re.search(re.escape(o) + r'(?![\w-])', page)]
    assert not missing, f'{TOOL_PAGES[tool]} does not mention {missing} of tools/{tool}.py'


def test_the_layouts_method_list_names_every_method():
    text = (REPO / 'docs' / 'extending.md').read_text()
    listed = re.search(r'sfp/methods/\s+one encoder per method: (.*?)\n\S', text, re.S).group(1)
    assert sorted(re.split(r'[,\s]+', listed.strip())) == available_methods()


def test_the_speed_pages_default_modes_are_the_tools():
    text = ' '.join((REPO / 'docs' / 'speed.md').read_text().split())
    listed = re.search(r'default all: `([^`]*)`', text).group(1).split()
    assert listed == list(load_tool('benchmark').METHODS)


def test_the_demo_pages_preset_list_is_the_presets():
    text = ' '.join((REPO / 'docs' / 'get_started.md').read_text().split())
    listed = re.search(r'`--vocab` is a preset \(.*?: `([^`]*)`\)', text).group(1).split()
    assert listed == list(PRESETS)
