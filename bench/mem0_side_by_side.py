"""ContextIQ and mem0 OSS side by side: the same workload, the same embedding model.

Measures, for each system, one after the other (ContextIQ first, never both at once):
  * ingest: N one-sentence memories over S scopes (user ids), added one at a time by one client
    (memories/s, embedding included);
  * search: scoped top-10 searches by one client, sequential, first with queries never asked
    before, then with queries repeated from a set of 64 (p50/p95/p99 ms, query embedding
    included);
  * resident memory at the end: the ContextIQ server process (VmRSS), or this Python process for
    mem0, which runs in-process (mem0ai's Memory with its Chroma vector store and the
    sentence-transformers embedder; add(infer=False), so no LLM is ever called).
The memories are those of `contextiq bench memories` (crates/cli/src/bench/memories.rs, `fact`).

    bench/mem0.sh --contextiq-bin target/release/contextiq [--memories 10000] [--scopes 100]
                  [--searches 500] [--system both|contextiq|mem0] [--model-dir DIR]
"""

import argparse
import datetime
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata

# Before anything imports mem0, chromadb or transformers: nothing may reach the network.
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MEM0_TELEMETRY="False",
                  ANONYMIZED_TELEMETRY="False", TOKENIZERS_PARALLELISM="false")
os.environ.setdefault("OPENAI_API_KEY", "unused-no-llm-is-called")

import psutil  # noqa: E402
import requests  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
SUBJECTS = ["sister", "manager", "dentist", "neighbour", "best friend", "daughter", "coach", "landlord"]
VERBS = ["loves", "hates", "collects", "is learning", "writes about", "teaches", "sells", "photographs"]
THINGS = ["vintage cameras", "sourdough bread", "mountain bikes", "jazz records", "orchids", "chess openings",
          "Portuguese tiles", "sea kayaks", "old maps", "board games", "hot sauces", "watercolours"]
PLACES = ["Lisbon", "Kyoto", "Oslo", "Austin", "Nairobi", "Lima", "Hanoi", "Tallinn", "Porto", "Quebec"]
M64 = (1 << 64) - 1


def fact(n):
    """memories.rs `fact`: a xorshift64 over n picks the words."""
    state = ((n * 0x9E3779B97F4A7C15) & M64) ^ 0xD1B54A32D192ED03

    def pick(length):
        nonlocal state
        state ^= (state << 13) & M64
        state ^= state >> 7
        state ^= (state << 17) & M64
        return state % length

    subject, verb, thing, place = (SUBJECTS[pick(len(SUBJECTS))], VERBS[pick(len(VERBS))],
                                   THINGS[pick(len(THINGS))], PLACES[pick(len(PLACES))])
    return f"My {subject} {verb} {thing} in {place} since {1990 + pick(35)}"


def scope(n, scopes):
    return f"bench-{n % scopes}"


def queries(searches, scopes, repeated):
    """(scope, query) pairs: each new query is asked once; repeated ones come from 64 questions."""
    for i in range(searches):
        if repeated:
            k = i % 64
            yield scope(i, scopes), f"Who {VERBS[k % 8]} {THINGS[k // 8]}?"
        else:
            yield scope(i, scopes), f"Who {VERBS[i % 8]} {THINGS[i % 12]} (question {i})?"


def percentiles(seconds):
    ordered = sorted(seconds)
    at = lambda p: 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]  # noqa: E731
    return at(50), at(95), at(99)


def run_workload(add, search, args):
    """add(scope, text); search(scope, query) -> [(scope, text)], best first. Returns the row."""
    add("bench-warm-up", "warm up")  # untimed, in a scope of its own: first-call costs
    search("bench-warm-up", "warm up")
    started = time.perf_counter()
    for n in range(args.memories):
        add(scope(n, args.scopes), fact(n))
    row = {"ingest": args.memories / (time.perf_counter() - started)}
    warnings = []
    for label, repeated in [("new", False), ("repeated", True)]:
        latencies = []
        for wanted, query in queries(args.searches, args.scopes, repeated):
            begun = time.perf_counter()
            results = search(wanted, query)
            latencies.append(time.perf_counter() - begun)
            if not results or any(got != wanted for got, _ in results):
                warnings.append(f"{label} query {query!r} in {wanted}: {len(results)} results, "
                                f"scopes {sorted({got for got, _ in results})}")
        row[label] = percentiles(latencies)
    for n in range(0, args.memories, max(1, args.memories // 5)):  # a stored fact finds itself first
        results = search(scope(n, args.scopes), fact(n))
        if not results or results[0][1] != fact(n):
            warnings.append(f"the search for stored fact {fact(n)!r} ranks first {results[:1]}")
    for warning in warnings[:10]:
        print(f"WARNING: {warning}", flush=True)
    if len(warnings) > 10:
        print(f"WARNING: ... and {len(warnings) - 10} more", flush=True)
    row["warnings"] = len(warnings)
    return row


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_contextiq(args):
    work = tempfile.mkdtemp(prefix="bench-contextiq-")
    port = free_port()
    env = dict(os.environ, EMBEDDING_MODEL_PATH=str(args.model_dir), RATE_LIMIT_PER_SECOND="0",
               CONTEXTIQ_BIND=f"127.0.0.1:{port}", LOG_LEVEL="warn")
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([args.contextiq_bin, "serve"], cwd=work, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    http = requests.Session()
    try:
        key_file = pathlib.Path(work, "data", "admin-key.txt")
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                sys.exit(f"contextiq serve exited with {server.returncode}; see {log.name}")
            try:
                if key_file.exists() and http.get(f"{base}/health/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"contextiq serve not ready after 300 s; see {log.name}")
            time.sleep(0.2)
        http.headers["Authorization"] = f"Bearer {key_file.read_text().strip()}"

        def add(user, text):
            response = http.post(f"{base}/api/v1/memories", json={"scope": {"user_id": user}, "fact": text})
            if response.status_code != 201:
                sys.exit(f"POST /api/v1/memories: {response.status_code} {response.text}")

        def search(user, query):
            response = http.post(f"{base}/api/v1/memories/search",
                                 json={"scope": {"user_id": user}, "search_query": query, "top_k": 10})
            if response.status_code != 200:
                sys.exit(f"POST /api/v1/memories/search: {response.status_code} {response.text}")
            return [(r["memory"]["scope"].get("user_id"), r["memory"]["fact"]) for r in response.json()["results"]]

        row = run_workload(add, search, args)
        row["rss"] = psutil.Process(server.pid).memory_info().rss / 2**20
        return row
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def sentence_transformers_dir(model_dir, work):
    """The model directory, with the modules.json of all-MiniLM-L6-v2 (Transformer, mean Pooling,
    Normalize) when it has none: without it sentence-transformers would not normalize."""
    if (model_dir / "modules.json").exists():
        return model_dir
    copy = pathlib.Path(work, "model")
    copy.mkdir()
    for entry in model_dir.iterdir():
        (copy / entry.name).symlink_to(entry.resolve())
    (copy / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},'
        ' {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]')
    return copy


def bench_mem0(args):
    from mem0 import Memory

    work = tempfile.mkdtemp(prefix="bench-mem0-")
    memory = Memory.from_config({
        "vector_store": {"provider": "chroma",
                         "config": {"collection_name": "bench", "path": os.path.join(work, "chroma")}},
        "embedder": {"provider": "huggingface",
                     "config": {"model": str(sentence_transformers_dir(args.model_dir, work)),
                                "embedding_dims": 384}},
        "history_db_path": os.path.join(work, "history.db"),
    })

    def add(user, text):
        memory.add(text, user_id=user, infer=False)

    def search(user, query):
        found = memory.search(query, filters={"user_id": user}, top_k=10)["results"]
        return [(r.get("user_id"), r["memory"]) for r in found]

    row = run_workload(add, search, args)
    row["rss"] = psutil.Process().memory_info().rss / 2**20
    return row


def environment(args):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    lines = [f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu}, "
             f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}",
             f"python {platform.python_version()}"]
    if args.system != "contextiq":
        import torch
        versions = ", ".join(f"{name} {metadata.version(name)}"
                             for name in ["mem0ai", "chromadb", "sentence-transformers", "transformers", "torch"])
        lines.append(f"{versions}; torch threads: {torch.get_num_threads()}")
    if args.system != "mem0":
        version = subprocess.run([args.contextiq_bin, "--version"], capture_output=True, text=True).stdout.strip()
        lines.append(f"{version or 'contextiq (no --version)'}: {args.contextiq_bin}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contextiq-bin", default=str(REPO / "target/release/contextiq"))
    parser.add_argument("--model-dir", type=pathlib.Path, default=REPO / "models/all-MiniLM-L6-v2")
    parser.add_argument("--memories", type=int, default=10000)
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--system", choices=["both", "contextiq", "mem0"], default="both")
    args = parser.parse_args()
    args.model_dir = args.model_dir.resolve()

    rows = {}
    for name, bench in [("ContextIQ", bench_contextiq), ("mem0 + Chroma", bench_mem0)]:
        if args.system in ("both", name.split()[0].lower()):
            print(f"{name}: {args.memories} memories over {args.scopes} scopes, {args.searches} searches...",
                  flush=True)
            begun = time.perf_counter()
            rows[name] = bench(args)
            print(f"{name}: done in {time.perf_counter() - begun:.0f} s", flush=True)

    print(f"\n{args.memories} memories over {args.scopes} scopes, 1 client, all-MiniLM-L6-v2; "
          f"{args.searches} top-10 scoped searches of each kind")
    for line in environment(args):
        print(f"- {line}")
    print()
    print("| | " + " | ".join(rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    table = [("ingest (memories/s, 1 client)", lambda r: f"{r['ingest']:.1f}")]
    for label in ["new", "repeated"]:
        for i, p in enumerate(["p50", "p95", "p99"]):
            table.append((f"search {p} ms, {label} queries", lambda r, label=label, i=i: f"{r[label][i]:.1f}"))
    table += [("resident memory at the end (MiB)", lambda r: f"{r['rss']:.0f}"),
              ("sanity warnings", lambda r: str(r["warnings"]))]
    for title, cell in table:
        print(f"| {title} | " + " | ".join(cell(row) for row in rows.values()) + " |")


if __name__ == "__main__":
    main()
