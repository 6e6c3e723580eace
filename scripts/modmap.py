#!/usr/bin/env python3
# Usage: python3 scripts/modmap.py [src] [--files]   (the module map of issue 12: rooms, and any cycle)
"""Module map of a Rust crate's src/: which module (file) references which (crate:: paths, use
super::), and the cycles between sibling modules of the same parent and between top-level rooms."""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {}
for dp, dn, fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f)
        rel = os.path.relpath(p, root)[:-3].replace(os.sep, '::')
        rel = re.sub(r'(::)?(mod|lib|main)$', '', rel) or 'crate'
        mods[rel] = open(p).read()
names = set(mods)
def resolve(path):
    parts = path.split('::')
    for i in range(len(parts), 0, -1):
        cand = '::'.join(parts[:i])
        if cand in names: return cand
    return None
edges = {m: set() for m in mods}
for m, text in mods.items():
    text = re.sub(r'#\[cfg\(test\)\][\s\S]*', '', text)  # ignore test modules at the end
    for mm in re.finditer(r'crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)', text):
        t = resolve(mm.group(1))
        if t and t != m and not m.startswith(t + '::') : edges[m].add(t)
    # use crate::{a::{..}, b} groups
    for grp in re.finditer(r'use crate::\{([\s\S]*?)\};', text):
        body = grp.group(1)
        depth = 0; cur = ''; items = []
        for ch in body:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0: items.append(cur); cur = ''
            else: cur += ch
        items.append(cur)
        for it in items:
            it = it.strip()
            if not it: continue
            head = re.match(r'[a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*', it)
            if not head: continue
            p = head.group(0)
            if '::{' in it:
                inner = it[it.index('{')+1:it.rindex('}')]
                for sub in inner.split(','):
                    sub = sub.strip().split('::')[0].split(' ')[0]
                    if sub and sub != 'self':
                        t = resolve(p + '::' + sub) or resolve(p)
                    else:
                        t = resolve(p)
                    if t and t != m and not m.startswith(t + '::'): edges[m].add(t)
            else:
                t = resolve(p)
                if t and t != m and not m.startswith(t + '::'): edges[m].add(t)
    # super:: references
    parent = m.rsplit('::', 1)[0] if '::' in m else 'crate'
    for mm in re.finditer(r'super::([a-z_][a-z0-9_]*)', text):
        t = resolve((parent + '::' if parent != 'crate' else '') + mm.group(1)) 
        if t and t != m: edges[m].add(t)
    for grp in re.finditer(r'use super::\{([^;]*)\};', text):
        for sub in re.findall(r'(?:^|[,{\s])([a-z_][a-z0-9_]*)(?=::|,|\s|\}|$)', grp.group(1)):
            t = resolve((parent + '::' if parent != 'crate' else '') + sub)
            if t and t != m: edges[m].add(t)
top = lambda m: m.split('::')[0]
if '--files' in sys.argv:
    for m in sorted(edges): print(f"{m} -> {', '.join(sorted(edges[m])) or '-'}")
rooms = {}
for m, ts in edges.items():
    for t in ts:
        if top(m) != top(t): rooms.setdefault(top(m), set()).add(top(t))
print("rooms:")
for r in sorted(rooms): print(f"  {r} -> {', '.join(sorted(rooms[r]))}")
cyc = []
for a, b in itertools.combinations(sorted(edges), 2):
    if b in edges[a] and a in edges[b]: cyc.append((a, b))
print("two-way file cycles:", cyc or "none")
rc = [(a, b) for a, b in itertools.combinations(sorted(rooms), 2) if b in rooms.get(a, ()) and a in rooms.get(b, ())]
print("two-way room cycles:", rc or "none")
# any cycle at all among rooms (topological sort)
indeg = {r: 0 for r in set(rooms) | {t for ts in rooms.values() for t in ts}}
for r, ts in rooms.items():
    for t in ts: indeg[t] += 1
queue = [r for r, d in indeg.items() if d == 0]; seen = 0
while queue:
    r = queue.pop(); seen += 1
    for t in rooms.get(r, ()):
        indeg[t] -= 1
        if indeg[t] == 0: queue.append(t)
print("room graph acyclic:", seen == len(indeg))
