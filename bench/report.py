"""docs/benchmarks.md: one generated section per configuration, replaced when the same
configuration runs again; text outside the generated sections is kept as it is."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from app.db.embedded import SUPERUSER, EmbeddedPostgres

TARGET_DB_P50_MS = 2.0
TARGET_RECALL = 0.98
TARGET_RATIO = 1.5

HEADER = """# Benchmarks

Measured with `bench/search.py` (`make bench`). Each generated section below is one dataset
configuration and says how it was run; running the same configuration again replaces its
section. Nothing here is a test: no test asserts a timing.

Targets (issue 2), on this machine: the database part of a search p50 ≤ 2 ms for users with
≤ 1k memories at 1M rows total; recall@10 ≥ 0.98 and no short results (fewer than k rows for a
user who has at least k) in every size class; end-to-end REST search p50 ≤ 1.5 × (embedding
p50 + database p50) measured in the same run.

How it measures:

- **Dataset.** Users of three sizes: *tiny* (20 memories), *regular* (500) and one *large*
  user (20,000), optionally padded with more 500-memory users (*filler*) toward 1M rows.
  Texts are generated sentences (personal facts, preferences, work notes, plans…). A pool of a
  few thousand generated sentences is embedded with the real local model (all-MiniLM-L6-v2,
  384 dimensions); a memory is one pool sentence or two joined, and its vector is
  `normalise(w·v_i + (1−w)·v_j + 0.15·g)` (w ~ U(0.55, 0.9), g a random unit vector; one
  sentence: `normalise(v_i + 0.15·g)`), so vectors sit where real embeddings of such text
  sit and no two are equal. Loaded with binary COPY through the owner role, audit and count
  triggers off during the load (counts set with one UPDATE), indexes rebuilt afterwards,
  VACUUM ANALYZE.
- **Queries.** Distinct generated questions ("when is the billing migration design doc due",
  "trip to Lisbon") embedded with the real model; spread round-robin over the measured users
  of a class.
- **Database.** The service's code path through the runtime role: `bound_session` (the
  identity-binding statement included), `app.memories.search.find` — the one statement a
  search sends: the ranking, the hits' rows and app names, and their access-log rows — with the
  route that `MemoryService._exact_route` picks (exact per-user scan up to
  `ENGRAM_SEARCH_EXACT_MAX_ROWS`, HNSW with relaxed iterative scan above), timed from BEGIN to
  COMMIT in the client. "server" is PostgreSQL's own execution time of the search statement
  (EXPLAIN ANALYZE on a sample of 20 queries) — the client time adds SQLAlchemy, asyncpg and
  two extra round trips (the binding statement, COMMIT).
- **Sweep.** For users with at least 5,000 memories, the first 50 queries again through both
  routes (forced with `ENGRAM_SEARCH_EXACT_MAX_ROWS`) and with other HNSW settings, so the cost
  of each choice is visible whichever route the configuration picks.
- **Cache state.** The memories table and its indexes are read in with `pg_prewarm` before
  measuring, and each class starts with 20 untimed queries.
- **Recall@10** against the exact cosine top 10 computed with numpy over the user's vectors
  (read through RLS); a returned row as close as the exact 10th counts as a hit.
- **REST** against a live `engram serve` subprocess (granian, one worker) connected as the
  runtime role, personal access tokens per measured user, one request at a time; every
  query text is new to the server, so its query-embedding cache never answers (the
  "cached" column repeats the semantic texts to show what a cache hit saves). Embedding time
  is `embed_query` in the benchmark process with the cache off, on the same texts. The server
  runs with `ENGRAM_SERVER_TIMING=true`; its `Server-Timing` headers give the split of each
  request inside the server (token check, caller registration, embedding, search statement).
- **Settings.** The benchmark process and the server read the same `ENGRAM_*` environment
  (no `.env`), so e.g. `ENGRAM_SEARCH_EXACT_MAX_ROWS=10000 make bench` measures that setting.
  `--wait-quiet MINUTES` waits for an idle machine first; each section reports the CPU use
  while it was measured.
- **Adds**: `POST /api/v1/memories` from concurrent clients (each add embeds, checks exact
  and near duplicates, inserts, writes history, audit and count triggers), and
  `MemoryService.add` with vectors from `embed_documents` batches (the import path).
"""


def command_line() -> str:
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f".venv/bin/python bench/search.py {args}".strip()


def host() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


async def machine(pg: EmbeddedPostgres, info: dict[str, Any]) -> dict[str, Any]:
    """`info` (from host()) plus the database's versions and the settings that matter here."""
    conn = await asyncpg.connect(host=str(pg.run_dir), user=SUPERUSER, database="engram")
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        settings = {
            r["name"]: r["value"]
            for r in await conn.fetch(
                "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name IN ('shared_buffers', "
                "'maintenance_work_mem', 'max_parallel_maintenance_workers', 'work_mem', 'jit')"
            )
        }
    finally:
        await conn.close()
    return {**info, "postgres": version, "pgvector": vector, "pg_settings": settings}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def save_json(results: dict[str, Any], directory: Path) -> None:
    rows = results["dataset"]["rows"]
    (directory / f"results-{rows}.json").write_text(json.dumps(results, indent=2, default=str))


def _f(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _dataset_line(d: dict[str, Any]) -> str:
    parts = [f"{d['users']} × {d['per_user']}"]
    if d["large_user_rows"]:
        parts.append(f"1 × {d['large_user_rows']:,}")
    if d["tiny_users"]:
        parts.append(f"{d['tiny_users']} × {d['tiny_rows']}")
    if d["filler_rows"]:
        parts.append(f"filler {d['filler_rows']:,} in users of {d['per_user']}")
    return " + ".join(parts) + f" = **{d['rows']:,} memories**"


def render(results: dict[str, Any], label: str) -> str:
    d, m = results["dataset"], results["machine"]
    out = [f"## {label}", ""]
    out.append(f"Command: `{results['command']}`  ")
    out.append(f"Run: {results['started'][:16].replace('T', ' ')} UTC, {results['wall_s']:.0f} s wall.  ")
    out.append(
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"PostgreSQL {m['postgres']}, pgvector {m['pgvector']}, Python {m['python']}; "
        + ", ".join(f"{k}={v}" for k, v in sorted(m["pg_settings"].items()))
        + ".  "
    )
    before, after = results["load_before"], results["load_after"]
    out.append(
        f"Load average (1/5/15 min) at start {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, at end "
        f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} (other work shares this machine).  "
    )
    out.append(f"Dataset: {_dataset_line(d)}, base pool {d['base_sentences']} sentences, seed {d['seed']}.  ")
    app = results.get("app_settings")
    if app:
        out.append(
            f"Engram at commit {app.get('commit', 'unknown')} (plus uncommitted work), "
            f"`ENGRAM_SEARCH_EXACT_MAX_ROWS={app['search_exact_max_rows']}`, "
            f"`ENGRAM_HNSW_EF_SEARCH={app['hnsw_ef_search']}`.  "
        )
    load = d.get("load", {})
    if load:
        builds = ", ".join(f"{name} {secs:.1f} s" for name, secs in load.get("index_s", {}).items())
        reused = " (reused from an earlier run)" if d.get("reused") else ""
        out.append(
            f"Load{reused}: COPY {load['copy_s']:.0f} s; index builds: {builds}; VACUUM ANALYZE "
            f"{load['analyze_s']:.0f} s."
        )
    out.append("")
    classes: dict[str, Any] = results["classes"]

    out += [
        "### Search: database only",
        "",
        "Times in ms. *app path*: the service's code (SQLAlchemy session, binding statement, "
        "`find`: ranking, hit rows, access log), BEGIN to COMMIT; *raw*: the same SQL over a plain "
        "asyncpg connection; *server*: PostgreSQL's execution time (EXPLAIN ANALYZE, 20 queries) and "
        "planning time. *hybrid*: `find` in hybrid mode (vector and keyword rankings of 40 each, fused "
        "in SQL). The `SELECT 1` column is the app path's fixed cost per transaction (session, pool "
        "check-out, BEGIN, binding statement, COMMIT).",
        "",
        "| class | memories/user | users measured | route | queries | app path p50 / p95 "
        "| app path, `SELECT 1` instead of the search p50 | raw p50 / p95 "
        "| server exec p50 / p95 | planning p50 | plan (scan nodes) | hybrid app path p50 / p95 | recall@10 "
        "| worst query | short results | CPU busy / steal % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in classes.items():
        r, e = c["recall"], c["explain"]
        out.append(
            f"| {name} | {c['rows_per_user']:,} | {c['users']} | {c['route']} | {c['db']['n']} | "
            f"{_f(c['db']['p50'])} / {_f(c['db']['p95'])} | {_f(c['db_empty']['p50'])} | "
            f"{_f(c['db_raw']['p50'])} / {_f(c['db_raw']['p95'])} | "
            f"{_f(e['execution']['p50'])} / {_f(e['execution']['p95'])} | {_f(e['planning']['p50'])} | "
            f"{'; '.join(e['plans'])} | {_f(c['db_hybrid']['p50'])} / {_f(c['db_hybrid']['p95'])} | "
            f"{r['recall']:.4f} | {r['min_recall']:.2f} | {r['short']} ({100 * r['short_share']:.1f} %) | "
            f"{c['busy_pct']:.0f} / {c['steal_pct']:.1f} |"
        )
    out.append("")
    for name, c in classes.items():
        if c.get("sweep"):
            out += [
                f"The {name} class through either route and other settings (database only, app path, "
                f"first {c['sweep'][0]['n']} queries of the class):",
                "",
                "| variant | p50 / p95 ms | recall@10 | worst query | short results |",
                "|---|---|---|---|---|",
            ]
            out += [
                f"| {v['variant']} | {_f(v['p50'])} / {_f(v['p95'])} | {v['recall']:.4f} | {v['min_recall']:.2f} | "
                f"{v['short']} |"
                for v in c["sweep"]
            ]
            out.append("")

    if "rest_semantic" in next(iter(classes.values())):
        out += [
            "### Search: end to end over REST",
            "",
            "Times in ms, one request at a time. *embed*: `embed_query` in the benchmark process (cache "
            "off) on the same texts, interleaved with the REST requests in blocks. Ratios: REST p50 ÷ "
            "(embed p50 + app-path database p50 of the same mode).",
            "",
            "| class | embed p50 / p95 | REST semantic p50 / p95 | ratio | REST hybrid p50 / p95 | ratio "
            "| semantic, cached embedding p50 / p95 | cached − db (request overhead) | semantic − cached "
            "(embedding in the server) | errors | short |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, c in classes.items():
            s, h, cached, emb = c["rest_semantic"], c["rest_hybrid"], c["rest_semantic_cached"], c["embed"]
            c["ratio_semantic"] = s["p50"] / (emb["p50"] + c["db"]["p50"])
            c["ratio_hybrid"] = h["p50"] / (emb["p50"] + c["db_hybrid"]["p50"])
            out.append(
                f"| {name} | {_f(emb['p50'], 1)} / {_f(emb['p95'], 1)} | {_f(s['p50'], 1)} / {_f(s['p95'], 1)} | "
                f"{_f(c['ratio_semantic'])} | {_f(h['p50'], 1)} / {_f(h['p95'], 1)} | {_f(c['ratio_hybrid'])} | "
                f"{_f(cached['p50'], 1)} / {_f(cached['p95'], 1)} | {_f(cached['p50'] - c['db']['p50'], 1)} | "
                f"{_f(s['p50'] - cached['p50'], 1)} | {s['errors'] + h['errors'] + cached['errors']} | "
                f"{s['short'] + cached['short']} |"
            )
        out.append("")
        if "server_phases" in next(iter(classes.values())):
            names = ["auth", "caller", "embed", "search", "total"]
            out += [
                "Inside the server (p50 of its `Server-Timing` phases, ms): *auth* checks the token, "
                "*caller* binds the identity and registers the user and app, *embed* embeds the query, "
                "*search* runs the search statement; *total* runs from the request's arrival to the "
                "response's first byte (the COMMIT included); the client's REST time adds HTTP and "
                "JSON on both ends.",
                "",
                "| class | request | " + " | ".join(names) + " |",
                "|---|---|" + "---|" * len(names),
            ]
            for name, c in classes.items():
                for key, label in (("rest_semantic", "semantic"), ("rest_semantic_cached", "semantic, cached")):
                    got = c["server_phases"].get(key, {})
                    cells = [_f(got[n]["p50"]) if n in got else "–" for n in names]
                    out.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
            out.append("")
        out.append(f"Server start-up (model load included): {results['server_start_s']:.1f} s.")
        out.append("")
        a, sv = results["add_rest"], results["add_service"]
        out += [
            "### Adds",
            "",
            "| path | memories | clients / batch | wall s | memories/s | per request p50 / p95 ms "
            "| CPU busy / steal % | notes |",
            "|---|---|---|---|---|---|---|---|",
            f"| `POST /api/v1/memories` | {a['n']} | {a['concurrency']} clients | {_f(a['wall_s'], 1)} | "
            f"{_f(a['per_s'], 1)} | {_f(a['latency']['p50'], 1)} / {_f(a['latency']['p95'], 1)} | "
            f"{a['busy_pct']:.0f} / {a['steal_pct']:.1f} | statuses {a['statuses']} |",
            f"| `MemoryService.add` + `embed_documents` | {sv['n']} | batches of {sv['batch']} | "
            f"{_f(sv['wall_s'], 1)} | {_f(sv['per_s'], 1)} | – | {sv['busy_pct']:.0f} / {sv['steal_pct']:.1f} | "
            f"embedding {_f(sv['embed_s'], 1)} s, database {_f(sv['db_s'], 1)} s, {sv['created']} created |",
            "",
        ]

    out += ["### Against the targets", ""]
    out += verdicts(results)
    out.append("")
    return "\n".join(out)


SATURATED_PCT = 90


def verdicts(results: dict[str, Any]) -> list[str]:
    classes: dict[str, Any] = results["classes"]
    rows = results["dataset"]["rows"]
    lines = []
    for name, c in classes.items():
        if c["busy_pct"] >= SATURATED_PCT:
            lines.append(
                f"- **Caution**: the machine was saturated while the {name} class was measured (CPU "
                f"{c['busy_pct']:.0f} % busy, other work included): its timings and ratios are not "
                "representative; recall and short results are unaffected."
            )
    scale = "at 1M rows total" if rows >= 1_000_000 else f"at {rows:,} rows (the target is stated at 1M)"
    for name, c in classes.items():
        if c["rows_per_user"] <= 1000:
            p50 = c["db"]["p50"]
            ok = "met" if p50 <= TARGET_DB_P50_MS else f"missed by {p50 - TARGET_DB_P50_MS:.2f} ms"
            lines.append(
                f"- DB p50 ≤ 2 ms, {name} users ({c['rows_per_user']} memories) {scale}: {p50:.2f} ms — {ok} "
                f"(same SQL over plain asyncpg {c['db_raw']['p50']:.2f} ms, server execution "
                f"{c['explain']['execution']['p50']:.2f} ms)."
            )
    for name, c in classes.items():
        r = c["recall"]
        ok = "met" if r["recall"] >= TARGET_RECALL and r["short"] == 0 else "**missed**"
        lines.append(
            f"- recall@10 ≥ 0.98 and no short results, {name}: recall {r['recall']:.4f} (worst query "
            f"{r['min_recall']:.2f}), {r['short']} short — {ok}."
        )
    for name, c in classes.items():
        if "ratio_semantic" in c:
            ratio = c["ratio_semantic"]
            ok = "met" if ratio <= TARGET_RATIO else f"**missed** by {ratio - TARGET_RATIO:.2f}×"
            lines.append(
                f"- REST semantic p50 ≤ 1.5 × (embed + db), {name}: {ratio:.2f}× — {ok} "
                f"(hybrid: {c['ratio_hybrid']:.2f}× of embed + hybrid db)."
            )
    return lines


def write(path: Path, results: dict[str, Any], label: str | None) -> None:
    label = label or f"{results['dataset']['rows']:,} memories"
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    section = f"<!-- bench:{slug} -->\n{render(results, label)}<!-- /bench:{slug} -->\n"
    header = f"<!-- bench:header -->\n{HEADER}<!-- /bench:header -->\n"
    current = path.read_text() if path.exists() else header
    current = re.sub(r"<!-- bench:header -->.*?<!-- /bench:header -->\n", lambda _: header, current, flags=re.S)
    pattern = re.compile(rf"<!-- bench:{re.escape(slug)} -->.*?<!-- /bench:{re.escape(slug)} -->\n", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: section, current)
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(current)
