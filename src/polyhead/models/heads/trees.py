"""Trees decoded from arc scores: the best tree with exactly one root per text (Chu-Liu-Edmonds), and the
batched check that skips it where each word's best head already forms one (the usual case once trained)."""

from __future__ import annotations

import numpy as np

from polyhead.data.schema import find_cycle


def best_trees(arcs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`best_tree` of every chunk, 0 at padding: each word's best head where those already form a
    single-rooted tree (checked for all chunks at once), Chu-Liu-Edmonds for the others.
    # (B*K, C, C+1) arc scores, (B*K,) words per chunk -> (B*K, C) heads"""
    width = arcs.shape[1]
    nodes, words = np.arange(width + 1), np.arange(1, width + 1)
    allowed = (nodes <= lengths[:, None, None]) & (nodes != words[:, None])  # (B*K, C, C+1)
    real = words <= lengths[:, None]  # (B*K, C)
    heads = np.where(real, np.where(allowed, arcs, -np.inf).argmax(-1), 0)
    for b in np.flatnonzero(~single_rooted_trees(heads, real) & (lengths > 0)):
        n = int(lengths[b])
        heads[b, :n] = best_tree(arcs[b, :n, : n + 1])
    return heads


def single_rooted_trees(heads: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Do each chunk's heads form a tree with exactly one root? Pointer doubling: after k rounds a node
    points at its 2^k-th ancestor, and every word reaches the root within C steps unless there is a cycle.
    # (B*K, C) heads (0 at padding), (B*K, C) real words -> (B*K,)"""
    parent = np.concatenate([np.zeros((len(heads), 1), dtype=heads.dtype), heads], 1)  # (B*K, C+1)
    for _ in range(max(1, int(np.ceil(np.log2(heads.shape[1] + 1))))):
        parent = np.take_along_axis(parent, parent, 1)
    return (((heads == 0) & real).sum(1) == 1) & (parent == 0).all(1)


def best_tree(scores: np.ndarray) -> list[int]:
    """Head of every word in the best tree with exactly one root.  # (n, n+1) -> n heads in 0..n

    scores[i, j]: score of node j (0 = root, k = word k) as the head of word i + 1; higher is better.
    Each word's best head where those form such a tree; else the best tree of any shape where it has one
    root (the best of all trees is the best of those with one root); else the best tree once every root
    arc is made costlier than any difference in tree scores, so that a second one never pays."""
    n = scores.shape[0]
    graph = np.full((n + 1, n + 1), -np.inf)  # graph[d, h] over all nodes; the root has no head
    graph[1:] = scores
    np.fill_diagonal(graph, -np.inf)
    greedy = graph[1:].argmax(1).tolist()
    if greedy.count(0) == 1 and not find_cycle(greedy):
        return greedy
    heads = chu_liu_edmonds(graph.copy())[1:]
    if np.count_nonzero(heads == 0) == 1:
        return heads.tolist()
    finite = graph[np.isfinite(graph)]
    graph[1:, 0] -= (finite.max() - finite.min()) * (n + 1) + 1.0
    return chu_liu_edmonds(graph)[1:].tolist()


def chu_liu_edmonds(graph: np.ndarray) -> np.ndarray:
    """Maximum spanning arborescence rooted at node 0.  # (N, N) graph[d, h] -> (N,) heads, heads[0] = -1

    Every node takes its best head; a cycle among those choices is contracted into one node, whose incoming
    arcs are scored by what they gain over the cycle arc they break, and the smaller graph is solved the same
    way (a loop, not recursion: up to N - 1 contractions). Then each cycle, last first, is opened where the
    arc chosen into it enters."""
    contracted = []
    while True:
        heads = graph.argmax(1)
        heads[0] = -1
        cycle = find_cycle(heads[1:].tolist())
        if not cycle:
            break
        cyc = np.array(cycle[:-1])
        outside = np.ones(len(graph), dtype=bool)
        outside[cyc] = False
        rest = np.flatnonzero(outside)  # sorted: rest[0] is the root, 0
        m, rows = len(rest), graph[rest]  # rows: (m, N) heads of the nodes outside the cycle
        small = np.full((m + 1, m + 1), -np.inf)
        small[:m, :m] = rows[:, rest]
        gain = graph[cyc][:, rest] - graph[cyc, heads[cyc]][:, None]  # (|C|, m): head u enters at v
        small[m, :m], enter = gain.max(0), gain.argmax(0)
        leave = rows[1:, cyc]  # (m - 1, |C|): a cycle node heads a node outside
        small[1:m, m], leave = leave.max(1), leave.argmax(1)
        contracted.append((heads, cyc, rest, enter, leave))
        graph = small
    for outer, cyc, rest, enter, leave in reversed(contracted):
        inner, heads, m = heads, outer.copy(), len(rest)
        into = inner[1:m]  # the heads of rest[1:] in the contracted graph; m is the cycle
        heads[rest[1:]] = np.where(into < m, rest[np.minimum(into, m - 1)], cyc[leave])
        heads[cyc[enter[inner[m]]]] = rest[inner[m]]
    return heads
