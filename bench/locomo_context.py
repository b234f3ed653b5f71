#!/usr/bin/env python3
"""Context assembly on LoCoMo: how often a question's evidence reaches the model's window.

Each LoCoMo conversation becomes one long session (every turn an event, ``metadata.dia_id``
naming it) on a server with no model configured, so compaction uses the offline summariser.
The session carries a compaction policy fixed beforehand, the shape agents configure and not
tuned on the questions: compact once the uncompacted events hold 2,000 tokens, keeping the 20
newest verbatim. Memories are generated from the session by the rules extractor. Then, for
each question (categories 1-4; 5 is adversarial), with the question as the next user turn,
the context is assembled with budgets of 1k, 2k and 4k tokens, and an evidence turn counts as
present when it is in the context as an event, as a memory extracted from it, or cited
(``[#seq]``) by a line of an included summary, which quotes or restates that turn.

Baselines, on the same budgets and the same data:
  last-tokens     the newest events that fit, verbatim (what a client without a server does);
  retrieve-only   each turn stored as a memory ("speaker: text"), the best matches for the
                  question by the server's hybrid search, as many as fit.
  context+turns   ContextIQ's context on a second session whose scope holds those per-turn
                  memories instead of extracted facts.
Token costs of the baselines are the server's counts of each turn plus 8 tokens for its
"[#seq] user (Name): " prefix, as the context renders turns.

Standard library only. The data (CC BY-NC 4.0) stays where it is: pass its path.

    python3 bench/locomo_context.py --server http://127.0.0.1:8000 --api-key ck_... \\
        --data ../shared/bench/locomo/locomo_dev.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

from locomo_common import ADVERSARIAL, call, evidence_ids, turns_of, wait_job

BUDGETS = (1000, 2000, 4000)
POLICY = {"token_threshold": 2000, "keep_recent_events": 20}
PREFIX_TOKENS = 8


def store_turn_memories(server: str, key: str, scope: dict, turns: list[dict]):
    for turn in turns:
        call(server, key, "POST", "/api/v1/memories",
             {"scope": scope, "fact": f"{turn['speaker']}: {turn['text']}", "metadata": {"dia_id": turn["dia_id"]}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    server, key = args.server.rstrip("/"), args.api_key
    samples = json.load(open(args.data))
    run = uuid.uuid4().hex[:8]
    methods = ("last-tokens", "retrieve-only", "context", "context+turns")
    coverage = {(method, budget): [] for method in methods for budget in BUDGETS}
    latencies: list[float] = []
    n_turns = n_summaries = 0
    started = time.monotonic()
    for sample in samples:
        turns = turns_of(sample["conversation"])
        n_turns += len(turns)
        tokens_of = {}
        extracted = Conversation(server, key, f"locomo-ctx-{sample['sample_id']}-{run}", turns)
        job = call(server, key, "POST", "/api/v1/memories/generate",
                   {"source_type": "session", "source_reference": extracted.id})
        wait_job(server, key, job["id"])
        extracted.index_memories({"user_id": extracted.user_id})
        with_turns = Conversation(server, key, f"locomo-ctx-turns-{sample['sample_id']}-{run}", turns)
        store_turn_memories(server, key, {"user_id": with_turns.user_id}, turns)
        with_turns.index_memories({"user_id": with_turns.user_id})
        n_summaries += sum(1 for event in call(
            server, key, "GET", f"/api/v1/sessions/{extracted.id}/events?limit=1000")["events"]
            if event["kind"] == "compaction")
        for event in extracted.events:
            tokens_of[event["metadata"]["dia_id"]] = event["token_count"] + PREFIX_TOKENS
        newest_first = [event["metadata"]["dia_id"] for event in reversed(extracted.events)]
        for qa in sample["qa"]:
            evidence = evidence_ids(qa.get("evidence", []))
            if qa.get("category") == ADVERSARIAL or not evidence:
                continue
            question = str(qa["question"])
            hits = call(server, key, "POST", "/api/v1/memories/search",
                        {"scope": {"user_id": with_turns.user_id}, "search_query": question, "top_k": 100})
            for budget in BUDGETS:
                kept, left = set(), budget
                for dia in newest_first:
                    if tokens_of[dia] > left:
                        break
                    kept.add(dia)
                    left -= tokens_of[dia]
                coverage[("last-tokens", budget)].append(len(evidence & kept) / len(evidence))
                kept, left = set(), budget
                for hit in hits["results"]:
                    dia = hit["memory"]["metadata"].get("dia_id")
                    if dia in tokens_of and tokens_of[dia] <= left:
                        kept.add(dia)
                        left -= tokens_of[dia]
                coverage[("retrieve-only", budget)].append(len(evidence & kept) / len(evidence))
                for method, conversation in (("context", extracted), ("context+turns", with_turns)):
                    body = {"budget_tokens": budget, "query": question, "memory_top_k": 100}
                    began = time.monotonic()
                    context = call(server, key, "POST", f"/api/v1/sessions/{conversation.id}/context", body)
                    latencies.append(time.monotonic() - began)
                    assert context["total_tokens"] <= budget, context["total_tokens"]
                    found = conversation.present(context)
                    coverage[(method, budget)].append(len(evidence & found) / len(evidence))
    n_questions = len(coverage[("context", BUDGETS[0])])
    print(f"conversations={len(samples)} turns={n_turns} questions={n_questions} "
          f"compactions={n_summaries} wall={time.monotonic() - started:.1f}s")
    print(f"context request p50={statistics.median(latencies) * 1e3:.1f} ms "
          f"p95={statistics.quantiles(latencies, n=20)[18] * 1e3:.1f} ms")
    print("evidence present (mean share of each question's evidence turns):")
    print("  method          " + "".join(f"{budget:>9}" for budget in BUDGETS))
    for method in methods:
        row = "".join(f"{statistics.mean(coverage[(method, budget)]):>9.3f}" for budget in BUDGETS)
        print(f"  {method:<16}{row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
