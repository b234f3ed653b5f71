"""What the LoCoMo benchmark scripts share: the HTTP call, evidence ids, a conversation's
sessions and the wait for a job. Evaluation only: the data stays in ../shared, never here."""

from __future__ import annotations

import json
import re
import time
import urllib.request

# LoCoMo's category of adversarial questions (their evidence is not in the conversation).
ADVERSARIAL = 5


def call(server: str, key: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server + path, data=data, method=method)
    request.add_header("X-API-Key", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read() or b"null")


def evidence_ids(raw: list[str]) -> set[str]:
    """A question's evidence as `D<session>:<turn>` ids (the data spells them loosely)."""
    ids = set()
    for item in raw:
        for part in re.split(r"[;,]", item):
            part = part.strip().replace("D:", "D")
            match = re.fullmatch(r"D(\d+):(\d+)", part)
            if match:
                ids.add(f"D{int(match.group(1))}:{int(match.group(2))}")
    return ids


def sessions_of(conversation: dict) -> list[tuple[int, list[dict]]]:
    """The conversation's sessions that have turns, by number."""
    numbers = sorted(
        int(key.split("_")[1]) for key in conversation if re.fullmatch(r"session_\d+", key) and conversation[key]
    )
    return [(n, conversation[f"session_{n}"]) for n in numbers]


def turns_of(conversation: dict) -> list[dict]:
    """Every turn of the conversation, in order."""
    return [turn for _, turns in sessions_of(conversation) for turn in turns]


def wait_job(server: str, key: str, job_id: str) -> dict:
    while True:
        job = call(server, key, "GET", f"/api/v1/jobs/{job_id}")
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
