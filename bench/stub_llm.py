#!/usr/bin/env python3
"""A stub OpenAI-compatible chat server for counting LLM calls without a paid API.

Answers every `POST /v1/chat/completions` with a valid extraction reply that holds no facts,
and a usage estimate (4 characters per token), so a benchmark can measure how many calls and
tokens the llm extractor spends per session. Standard library only.

    python3 bench/stub_llm.py --port 18090
    LLM_PROVIDER=openai_compatible LLM_MODEL=stub LLM_BASE_URL=http://127.0.0.1:18090/v1 contextiq serve
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        prompt = "".join(str(message.get("content", "")) for message in body.get("messages", []))
        text = '{"facts": []}'
        reply = json.dumps({
            "id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 4, "total_tokens": len(prompt) // 4 + 4},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18090)
    ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
