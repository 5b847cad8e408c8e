#!/usr/bin/env python3
"""Writes the hot-code layout of the relay's binary from a link map and the
code pages a relay touched (packaging/hot-code/profile.sh runs it).

The kernel maps a file's pages 64 KiB at a time around each page a process
touches (fault-around) when they are in the page cache, so the code a relay
runs, scattered over the binary's 21 MiB, kept about 11 MiB of it resident.
Linking that code together keeps it in a few MiB. Two files say what goes
first in the binary's code (the sections of each tier, startup and idle
first, then what ingest and forwarding run, in their current address order):

- relay-hot.ld: the hot sections that no symbol names alone (the compiler's
  unnamed functions: object destroyers, key paths, thunks; and functions
  whose name several objects define), by object file, in a .text.hot
  output section just before .text;
- relay.order: one symbol of each other hot input section, a name defined
  once in the binary (lld's --symbol-ordering-file moves every section that
  defines a name it lists), in the order .text starts with.

A section of several functions (the static Swift runtime's, Foundation's and
ICU's objects carry one .text each) moves whole: it goes first only if at
least a quarter of its pages were touched; otherwise its few touched pages
cost less where they are.

usage: layout.py BINARY MAP OUT_DIR TIER.json...  (TIER.json from workload.py)
"""
import collections
import json
import os
import re
import subprocess
import sys

PAGE = 4096
LARGE = 2 * PAGE      # a section larger than this holds several functions
DENSE = 0.25          # ...and goes first only if this share of its pages was touched

binary, link_map, out_dir, tier_files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
if not tier_files:
    sys.exit("usage: layout.py BINARY MAP OUT_DIR TIER.json...")

# File offsets (what workload.py reports) to addresses, by the binary's LOAD segments.
# Two segments can share a file page (the read-only one ends where the code
# starts), so an offset of the executable mapping is read in the E segment.
code_segments = []
for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if f and f[0] == "LOAD" and "E" in f[6:-1]:
        code_segments.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
if not code_segments:
    sys.exit("layout.py: %s has no executable LOAD segment" % binary)


def code_page(offset):
    for off, vaddr, size in code_segments:
        if off - off % PAGE <= offset < off + size:
            return (offset - off + vaddr) // PAGE
    return None


tiers = []
for path in tier_files:
    pages = set()
    for perms, offsets in json.load(open(path))["pages"].items():
        if "x" in perms:
            pages |= {code_page(o) for o in offsets} - {None}
    tiers.append(pages)

# Input sections of the code's output sections, with their symbols (the map
# written with --no-demangle). lld's map: VMA LMA Size Align, then Out (1
# space), In (9 spaces) or Symbol (17).
row = re.compile(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (.*)$")
sections, current_out, last = [], None, None
defined = collections.Counter()  # how many times each name is defined, in all code
for line in open(link_map):
    m = row.match(line.rstrip("\n"))
    if not m:
        continue
    rest = m.group(3)
    if not rest.startswith(" "):
        current_out, last = rest.strip(), None
    elif rest.startswith(" " * 16):
        if last is not None:
            last["symbols"].append(rest.strip())
        defined[rest.strip()] += 1
    elif rest.startswith(" " * 8):
        last = None
        if current_out in (".text", ".text.hot"):
            last = {"start": int(m.group(1), 16), "size": int(m.group(2), 16), "name": rest.strip(), "symbols": []}
            sections.append(last)
if not sections:
    sys.exit("layout.py: no code sections in %s (is it lld's -Map output?)" % link_map)


def hot_in(section, pages):
    first = section["start"] // PAGE
    last_page = (section["start"] + max(section["size"], 1) - 1) // PAGE
    touched = sum(1 for p in range(first, last_page + 1) if p in pages)
    if section["size"] > LARGE:
        return touched >= DENSE * (last_page - first + 1)
    return touched > 0


# What a linker script can name by object file: SwiftPM's objects (not
# archive members), with plain names (no wildcard or script characters).
plain = re.compile(r"^[A-Za-z0-9_.+$-]+$")
symbols, patterns, placed = [], [], set()
hot_bytes, left_out = 0, 0
for pages in tiers:
    for s in sorted(sections, key=lambda s: s["start"]):
        if id(s) in placed or not hot_in(s, pages):
            continue
        placed.add(id(s))
        unique = [n for n in s["symbols"] if defined[n] == 1]
        obj, sec = re.match(r"(.*):\((.*)\)$", s["name"]).groups()
        where = obj.split("/")[-2:]
        if unique:
            symbols.append(unique[0])
        elif "(" not in obj and len(where) == 2 and all(plain.match(p) for p in where + [sec]):
            # By object file, relative to the build directory (*/Module.build/File.o).
            patterns.append('    */%s/%s("%s")' % (where[0], where[1], sec))
        else:
            left_out += 1
            continue
        hot_bytes += s["size"]

os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "relay.order"), "w") as f:
    f.write("\n".join(symbols) + "\n")
with open(os.path.join(out_dir, "relay-hot.ld"), "w") as f:
    f.write("/* Generated by packaging/hot-code/layout.py: hot sections no symbol names alone, before .text. */\n"
            "SECTIONS {\n  .text.hot : {\n%s\n  }\n} INSERT BEFORE .text;\n" % "\n".join(patterns))
print("layout: %d code pages touched; %.1f MiB of code first: %d sections by symbol, %d by object file; "
      "%d hot sections nothing can name" % (len(set().union(*tiers)), hot_bytes / 2**20, len(symbols), len(patterns), left_out))
