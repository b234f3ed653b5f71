#!/usr/bin/env python3
"""Extraction recall on LoCoMo: how much of what questions ask about ends up in memories.

Each LoCoMo conversation is ingested as sessions (one per LoCoMo session, every turn an event
with ``metadata.dia_id``), memories are generated from each session through the server's
``POST /api/v1/memories/generate``, and each question's evidence turns are checked against the
source events of the live memories of the conversation's scope:

    coverage = |evidence turns that are a source of some memory| / |evidence turns|

averaged over questions of categories 1-4 (5 is adversarial), with the share of questions
where at least one evidence turn is covered. Standard library only. The data (CC BY-NC 4.0)
stays where it is: pass its path, never copy it into the repository.

    python3 bench/locomo_extraction.py --server http://127.0.0.1:8000 --api-key ck_... \\
        --data ../shared/bench/locomo/locomo_dev.json [--extractor rules|llm]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse
import uuid
from datetime import datetime

from locomo_common import ADVERSARIAL, call, evidence_ids, sessions_of


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--extractor", default="rules", choices=["rules", "llm"])
    args = parser.parse_args()
    server = args.server.rstrip("/")
    samples = json.load(open(args.data))
    run = uuid.uuid4().hex[:8]

    coverages, hits, durations, n_memories, n_turns, n_covered_turns = [], [], [], 0, 0, 0
    llm_calls, n_sessions = 0, 0
    started = time.monotonic()
    for sample in samples:
        user_id = f"locomo-extract-{sample['sample_id']}-{run}"
        scope = {"user_id": user_id}
        event_dia: dict[str, str] = {}
        jobs = []
        for number, turns in sessions_of(sample["conversation"]):
            session = call(server, args.api_key, "POST", "/api/v1/sessions", {"user_id": user_id})
            events = [
                {
                    "author": turn["speaker"],
                    "role": "user",
                    "content": turn["text"],
                    "metadata": {"dia_id": turn["dia_id"]},
                }
                for turn in turns
            ]
            for start in range(0, len(events), 100):
                appended = call(
                    server, args.api_key, "POST", f"/api/v1/sessions/{session['id']}/events",
                    {"events": events[start:start + 100]},
                )
                for event in appended["events"]:
                    event_dia[event["id"]] = event["metadata"]["dia_id"]
            job = call(server, args.api_key, "POST", "/api/v1/memories/generate", {
                "source_type": "session", "source_reference": session["id"],
                "config": {"extractor": args.extractor},
            })
            jobs.append(job["id"])
            n_turns += len(turns)
            n_sessions += 1
        for job_id in jobs:
            while True:
                job = call(server, args.api_key, "GET", f"/api/v1/jobs/{job_id}")
                if job["status"] in ("completed", "failed"):
                    break
                time.sleep(0.2)
            if job["status"] == "failed":
                print(f"job {job_id} failed: {job['error']}", file=sys.stderr)
                continue
            durations.append((parse_time(job["finished_at"]) - parse_time(job["created_at"])).total_seconds())
            llm_calls += job["llm_usage"]["calls"]
        covered: set[str] = set()
        cursor = None
        while True:
            query = "scope=" + urllib.parse.quote(json.dumps(scope)) + "&limit=100"
            if cursor:
                query += "&cursor=" + urllib.parse.quote(cursor)
            page = call(server, args.api_key, "GET", f"/api/v1/memories?{query}")
            for memory in page["memories"]:
                n_memories += 1
                covered.update(event_dia[e] for e in memory["source_event_ids"] if e in event_dia)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        n_covered_turns += len(covered)
        for qa in sample["qa"]:
            evidence = evidence_ids(qa.get("evidence", []))
            if qa.get("category") == ADVERSARIAL or not evidence:
                continue
            found = len(evidence & covered)
            coverages.append(found / len(evidence))
            hits.append(1.0 if found else 0.0)
    elapsed = time.monotonic() - started
    print(f"conversations={len(samples)} sessions={n_sessions} turns={n_turns} memories={n_memories} "
          f"turns_covered={n_covered_turns} ({n_covered_turns / max(n_turns, 1):.3f})")
    if durations:
        print(f"job seconds (queued to completed): median={statistics.median(durations):.3f} "
              f"max={max(durations):.3f}; llm calls per session={llm_calls / max(len(durations), 1):.2f}; "
              f"wall={elapsed:.1f}s")
    print(f"questions={len(coverages)} evidence_coverage={statistics.mean(coverages):.3f} "
          f"any_evidence_covered={statistics.mean(hits):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
