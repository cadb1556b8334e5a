"""Read what a page shows from the DOM Chromium dumped (``--dump-dom``): a small element tree on the standard
library's HTML parser, and the Evidently dashboard's panels (cards) with their titles, legends and points."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node | str"] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        parts = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text())
        return " ".join(p.strip() for p in parts if p and p.strip())

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):  # tolerate unclosed elements
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if data.strip():
            self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    return builder.root


@dataclass
class Panel:
    title: str
    subtitle: str
    text: str
    series: dict[str, list[tuple[float, float]]]  # legend label -> plotted points (x, y in SVG pixels)

    @property
    def legend(self) -> list[str]:
        return list(self.series)

    def ys(self, label: str) -> list[float]:
        """The series' points from left to right, as heights (larger is higher on the chart)."""
        return [-y for _, y in sorted(self.series[label])]


def panels(root: Node) -> dict[str, Panel]:
    """The dashboard's panels by title: each is an MUI card whose first heading is the panel's title; a line
    chart's series are told apart by colour (legend swatch = the points' stroke)."""
    out = {}
    for card in root.find_all(cls="MuiCard-root"):
        heads = card.find_all("h5")
        if not heads:
            continue
        paragraphs = card.find_all("p")
        by_colour: dict[str, list[tuple[float, float]]] = {}
        for circle in card.find_all("circle", cls="MuiMarkElement-root"):
            point = (float(circle.attrs["cx"]), float(circle.attrs["cy"]))
            by_colour.setdefault(circle.attrs.get("stroke", "").upper(), []).append(point)
        series = {}
        for item in card.find_all(cls="MuiChartsLegend-series"):
            swatch = item.find_all("rect", cls="MuiChartsLabelMark-fill")
            colour = swatch[0].attrs.get("fill", "").upper() if swatch else ""
            series[item.text()] = by_colour.get(colour, [])
        title = heads[0].text()
        out[title] = Panel(title, paragraphs[0].text() if paragraphs else "", card.text(), series)
    return out


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]
